import sys, time, json
from pathlib import Path
import numpy as np
from playwright.sync_api import sync_playwright
from huma_rt.bench._browser import Server, Page, write_wav48, silence
bundle = sys.argv[1]
wav = write_wav48(Path("/tmp/silence48.wav"), silence(5.0))
srv = Server("--max-visitors", "1", "--warm", "1", "--responder", "scripted", "--reply", "Sure, the weather in Paris is sunny and warm today, with a light breeze from the west.", "--bundle", bundle)
try:
    with sync_playwright() as pw:
        page = Page(pw, srv.url + "?measure=1", wav)
        page.start()
        page.wait("huma.frames.length > 30", 60, "frames")
        print("box", page.js("huma.movingBox"), "open events", page.js("huma.events.filter(e => e.type === 'open')"))
        t_ask = page.js("performance.now()")
        page.js("huma.ask('What is the weather like today in Paris?')")
        page.wait("huma.events.find(e => e.type === 'answer_start')", 30, "answer")
        time.sleep(3)
        frames = np.array(page.js("huma.frames"), float); levels = np.array(page.js("huma.levels"), float)
        audio_on = levels[(levels[:, 0] > t_ask) & (levels[:, 2] > 0.003)][:, 0].min()
        sel = frames[(frames[:, 0] > audio_on - 300) & (frames[:, 0] < audio_on + 600)]
        print("audio on", round(audio_on - t_ask))
        for f in sel: print(round(f[0] - audio_on), f[1], f[5])
        page.close()
finally:
    srv.close()
