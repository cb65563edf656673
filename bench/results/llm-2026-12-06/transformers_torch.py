import sys, time, os
sys.path.append("/tmp/llmw/tf2"); sys.path.append("/tmp/llmw/tf3")
t0=time.perf_counter(); c0=time.process_time()
import torch; torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
from huma_rt.speech.llm_gguf import packaged_gguf
p=packaged_gguf()
tok=AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
model=AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
model.eval()
print("load wall %.1f s cpu %.1f s"%(time.perf_counter()-t0, time.process_time()-c0))
msgs=[{"role":"user","content":"What is the capital of France?"}]
ids=tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
if not torch.is_tensor(ids): ids=ids["input_ids"]
with torch.no_grad():
    model.generate(ids, max_new_tokens=4, do_sample=False)
    for n in (1, 33):
        t=time.perf_counter(); c=time.process_time()
        out=model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        w,cp=time.perf_counter()-t, time.process_time()-c
        print(n, "wall %.3f cpu %.3f"%(w,cp))
        if n==1: w1,c1=w,cp
print("decode tok/s wall %.1f, cpu ms/token %.1f"%(32/(w-w1), (cp-c1)/32*1e3))
print(repr(tok.decode(out[0, ids.shape[1]:])))
import resource; print("peak rss MiB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)
