import numpy as np
from huma_rt.bench.speech_corpus import load_16k, prompts, speech_end

from huma_rt.speech.turns import SpeechProbability, TurnConfig, TurnDetector

prob=SpeechProbability()
mk=lambda r: TurnDetector(TurnConfig(question_silence_s=0.3, short_silence_s=0.3, long_silence_s=0.3, quiet_gate_rms=r), None, probability=prob)
on, off = mk(1e-3), mk(0.0)
for p in [p for p in prompts() if len(p.text.split())>=4]:
    x=load_16k(p); s=np.concatenate([np.zeros(8000,np.float32),x.astype(np.float32),np.zeros(24000,np.float32)]); te=8000+speech_end(x)
    r={}
    for n,d in (("on",on),("off",off)):
        d.reset(); ends=[]
        for i in range(0,s.size,320): ends+=[d.pushed_samples for e in d.push(s[i:i+320]) if e.kind=="end"]
        r[n]=(any(e<te for e in ends), d.gated)
    if r["on"][0]!=r["off"][0]:
        lead=(np.flatnonzero(np.abs(x)>1e-3)[:1]/16000).tolist()
        print(p.name, r, "lead s", lead, float(np.sqrt(np.mean(x**2))), p.text[:60])
