"""Would the ASR give the same text if it started at the energy drop (before silero's end)?"""
import sys, json, time, numpy as np
from huma_rt.bench.speech_corpus import load_16k, prompts, speech_end
from huma_rt.speech.asr import AsrConfig, Recognizer
from huma_rt.speech.asr_eval import word_error_rate
from huma_rt.speech.turns import SpeechProbability, TurnConfig, TurnDetector
RATE=16000; W=512
db=float(sys.argv[1]) if len(sys.argv)>1 else 35.0
corpus=[p for p in prompts() if len(p.text.split())>=4]
rec=Recognizer(AsrConfig())
prob=SpeechProbability()
cfg=TurnConfig(question_silence_s=0.7, short_silence_s=0.7, long_silence_s=0.7, energy_drop_db=db)
det=TurnDetector(cfg, None, probability=prob)
variants=[(k,pad) for k in (0,1,2) for pad in (0.0,0.1,0.3)]
pairs={"silero": []}; pairs.update({v: [] for v in variants})
gain={v: [] for v in variants}; same={v:0 for v in variants}; n=0; nodrop=0
for p in corpus:
    pcm=load_16k(p)
    det.reset()
    stream=np.concatenate([np.zeros(8000,np.float32), pcm, np.zeros(24000,np.float32)])
    ends=[]
    for i in range(0, stream.size, 320):
        ends += [e for e in det.push(stream[i:i+320]) if e.kind=="end"]
    if len(ends)!=1: continue
    ev=ends[0]; n+=1
    base=rec.transcribe(ev.samples).text.strip()
    pairs["silero"].append((p.text, base))
    early=ev.end-ev.silence_start  # samples silero called speech after the energy drop
    if early==0: nodrop+=1
    for (k,pad) in variants:
        cut=ev.samples.size-early+k*W
        cut=min(cut, ev.samples.size)
        x=ev.samples[:cut]
        if pad: x=np.concatenate([x,np.zeros(int(pad*RATE),np.float32)])
        t=rec.transcribe(x).text.strip()
        pairs[(k,pad)].append((p.text,t))
        same[(k,pad)]+= (t==base)
        # the ASR could start when the cut's window has been heard (cut) instead of at silero's
        # first silent window (ev.end + one window): gain in ms
        gain[(k,pad)].append(1000*((ev.samples.size+W)-min(cut+W*0, ev.samples.size+W))/RATE)
print(f"energy drop {db} dB: {n} single-utterance prompts, {nodrop} with no drop before silero's end")
print("silero's end (now): WER", round(word_error_rate(pairs['silero']),3))
for v in variants:
    print(f"cut at drop + {v[0]} windows, {int(v[1]*1000)} ms zeros: WER {word_error_rate(pairs[v]):.3f}, same text {100*same[v]/n:.1f} %, ASR start sooner p50 {np.median(gain[v]):.0f} ms (p10 {np.percentile(gain[v],10):.0f})")
