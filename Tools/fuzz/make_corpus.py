#!/usr/bin/env python3
"""Writes the seed corpus Tools/fuzz/corpus/: small valid safetensors files (made with the
reference `safetensors` package when it is installed) and invalid ones, plus bare headers
(each input is also fuzzed as a header alone and as a JSON document).

    python3 Tools/fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def raw(header, data=b"", declared=None):
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header) if declared is None else declared) + header + data


def main():
    os.makedirs(OUT, exist_ok=True)
    try:
        import numpy as np
        from safetensors.numpy import save

        write("valid-ref-two-tensors", save({"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                                             "b": np.zeros(3, dtype=np.float16)}))
        write("valid-ref-metadata", save({"emb": np.ones((2, 2), dtype=np.int64)},
                                         metadata={"format": "pt", "step": "100"}))
        write("valid-ref-scalar-and-empty", save({"s": np.array(1.5, dtype=np.float64),
                                                  "e": np.zeros((0, 4), dtype=np.uint8),
                                                  "m": np.array([True, False])}))
        write("valid-ref-many", save({f"layer.{i}.weight": np.full((2,), i, dtype=np.int16) for i in range(8)}))
    except ImportError:
        print("safetensors/numpy not installed: writing hand-made files only")

    write("valid-empty-object", raw("{}"))
    write("valid-metadata-null", raw('{"__metadata__":null}'))
    write("valid-f4-f6", raw('{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]},'
                             '"b":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[2,5]}}', b"\0" * 5))
    write("valid-escapes-unicode", raw('{"caf\\u00e9 \\ud83d\\ude00\\n":{"dtype":"U8","shape":[1],'
                                       '"data_offsets":[0,1],"extra":[1,{"x":null}]}}  ', b"\x07"))
    write("valid-unordered-offsets", raw('{"z":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},'
                                         '"a":{"dtype":"I8","shape":[1],"data_offsets":[2,3]},'
                                         '"m":{"dtype":"I8","shape":[0],"data_offsets":[2,2]}}', b"abc"))
    write("invalid-overlap", raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                 '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 12))
    write("invalid-gap", raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8))
    write("invalid-overflow-shape", raw('{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'))
    write("invalid-duplicate-key", raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                       '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"xy"))
    write("invalid-length-too-large", raw("{}", declared=100_000_001))
    write("invalid-length-beyond-file", raw("{}", declared=64))
    write("invalid-deep-nesting", raw('{"a":' + "[" * 70 + "]" * 70 + "}"))
    write("invalid-lone-surrogate", raw('{"\\ud800":1}'))
    write("invalid-metadata-number", raw('{"__metadata__":{"k":1}}'))
    write("invalid-bad-utf8", raw(b'{"\xff":1}'))
    write("invalid-numbers", raw('{"a":{"dtype":"F32","shape":[-0, 1e3, 01],"data_offsets":[0.0,1]}}'))
    write("header-only", json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
                                     "__metadata__": {"k": "v"}}).encode())
    write("short-prefix", b"\x05\x00\x00")


if __name__ == "__main__":
    main()
