"""A fake peer child for tests/test_peer.py: the protocol of bench/launch/peer_child.py with planted behaviour,
so no peer venv is built. FAKE_PEER_MODE: ok (the peer is 15% slower than its baseline by construction, its
outputs the input ids spread over 4 features), fail-load (load replies an error), die (exits during load)."""

import json
import os
import sys

import numpy as np

from bench.measure.paired import measure_paired

SLOWER = 1.15


def main() -> None:
    mode = os.environ.get("FAKE_PEER_MODE", "ok")
    rng = np.random.default_rng(0)
    now = [0.0]

    def side(scale: float):
        def call() -> float:
            t = 0.01 * scale * float(rng.uniform(0.97, 1.03))  # planted jitter, seeded
            now[0] += t
            return t
        return call

    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        if req["op"] == "load":
            if mode == "die":
                sys.stderr.write("Traceback ...\nOSError: planted crash of the peer\n")
                sys.exit(3)
            reply = ({"error": "ValueError: planted export failure"} if mode == "fail-load"
                     else {"info": "fake peer", "versions": {"sentence-transformers": "0"}, "artifact": None})
        elif req["op"] == "outputs":
            ids = np.load(req["inputs"])["input_ids"].astype(np.float32)
            np.save(req["out"], np.repeat(ids[..., None], 4, -1))
            reply = {}
        else:
            lat = measure_paired(side(SLOWER), side(1.0), clock=lambda: now[0], collect=lambda: None, **req["protocol"])
            reply = {"variant_s": list(lat.variant_s), "baseline_s": list(lat.baseline_s),
                     "block_pairs": lat.block_pairs, "alpha": lat.alpha, "band": lat.band, "stop": lat.stop}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
