"""The CPU renderer's tile mask, A/B in one process: per bundle, two sessions of one avatar
stream the same speech in 40 ms chunks, their order alternating per chunk; B's renderer has the
mask off (bin_merge and blend over the whole rectangle that bounds the dynamic tiles, as before
2026-12-07). Every frame of A must equal B's (asserted). Per bundle: frame ms p50 (push + frames
+ a copy), blend ms p50, the tiles A blended (median) and the rest rectangle's tiles.

    OMP_NUM_THREADS=1 python ab_tile_mask.py ROUNDS BUNDLE [BUNDLE ...]
"""
import sys, time, json, numpy as np
from huma_rt.runtime import Avatar
from huma_rt.bench.common import frame_stage_times
from huma_rt.speech import espeak
from huma_rt.speech.audio import prepare_input
texts = ["Hello, I am your new avatar. Please tell me what you would like to talk about today, and I will answer.",
         "The weather in Paris is sunny and warm, perfect for a walk along the river."]
pcm = np.concatenate([prepare_input(s.pcm, s.sample_rate) for s in (espeak.synthesize(t, voice="en-us", rate=165) for t in texts)])
rounds = int(sys.argv[1])
res = {}
for path in sys.argv[2:]:
    av = Avatar.load(path, device="cpu", threads=1)
    times = {"mask": [], "rect": []}; blend = {"mask": [], "rect": []}; tiles = []
    for r in range(rounds):
        a, b = av.session(), av.session()
        fb = b._renderer
        st = fb._stages  # the old path: bin_merge and blend over the whole rectangle
        assert st is not a._renderer._stages
        st.bin_merge = (lambda m: lambda idx, rect, touched=None, draw=None: m(idx, rect))(st.bin_merge)
        st.blend = (lambda m: lambda rect, d, draw=None: m(rect, d))(st.blend)
        for k in range(0, pcm.size, 640):
            chunk = pcm[k:k + 640]
            order = (("mask", a), ("rect", b)) if (k // 640 + r) % 2 == 0 else (("rect", b), ("mask", a))
            got = {}
            for name, s in order:
                s.push_audio(chunk)
                t0 = time.perf_counter()
                fs = [f.rgb.copy() for f in s.frames()]
                dt = time.perf_counter() - t0
                if fs:
                    times[name].append(dt * 1e3 / len(fs)); blend[name].append(frame_stage_times(s)["blend"] * 1e3)
                got[name] = fs
            assert len(got["mask"]) == len(got["rect"]) and all(np.array_equal(x, y) for x, y in zip(got["mask"], got["rect"])), "frames differ"
            if got["mask"]:
                tiles.append(a._renderer.redrawn_tiles)
    med = {k: float(np.median(v)) for k, v in times.items()}
    res[path] = {"size": av.size, "frames_each": len(times["mask"]), "frame_ms_mask": round(med["mask"], 2), "frame_ms_rect": round(med["rect"], 2),
                 "ratio": round(med["mask"] / med["rect"], 3), "blend_ms_mask": round(float(np.median(blend["mask"])), 2),
                 "blend_ms_rect": round(float(np.median(blend["rect"])), 2), "tiles_redrawn_median": float(np.median(tiles)),
                 "rect_tiles_rest": int((av_box := a._renderer._rest_box)[2] - av_box[0]) * int(av_box[3] - av_box[1])}
    print(json.dumps({path: res[path]}), flush=True)
