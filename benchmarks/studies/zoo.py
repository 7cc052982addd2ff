"""Zoo figures against the published tables: params and multiply-adds ("GFLOPs")
of every registered model at its default input, with the deviation from the
paper where one exists.

    python -m benchmarks.studies.zoo
"""
from __future__ import annotations

from edge.zoo import zoo_table

# (params in millions, GFLOPs as multiply-adds) at the model's default input: the X3D and GhostNet
# papers; torchvision's r2plus1d_18 (31,505,325 params, 40.52 GFLOPs at 16 x 112).  R(2+1)D-50's
# published 76.45 GFLOPs are at 16 x 256, not its default 16 x 224 (edge.models.r2plus1d: 75.15 there);
# S3D / S3D-G have no confirmed GFLOPs (edge.models.s3d).
PUBLISHED: dict[str, tuple[float, float]] = {
    "r2plus1d_18": (31.505, 40.52),
    "x3d_xs": (3.8, 0.60),
    "x3d_s": (3.8, 1.96),
    "x3d_m": (3.8, 4.73),
    "x3d_l": (6.2, 18.37),
    "ghostnet_100": (5.2, 0.142),
}


def main() -> None:
    print(f"{'model':<14} {'input':<12} {'params':>8} {'GFLOPs':>8}  {'published':>14}  {'dev params':>10} "
          f"{'dev GFLOPs':>10}")
    for row in zoo_table():
        p, g = row["params"] / 1e6, row["gflops"]
        shape = "x".join(map(str, row["input_shape"][2:4]))
        pub = PUBLISHED.get(row["name"])
        dev = (f"{(p / pub[0] - 1) * 100:+9.1f}% {(g / pub[1] - 1) * 100:+9.1f}%" if pub else "")
        pub_s = f"{pub[0]:.1f}M / {pub[1]:.3g}" if pub else "-"
        print(f"{row['name']:<14} {shape:<12} {p:7.2f}M {g:8.3f}  {pub_s:>14}  {dev}")


if __name__ == "__main__":
    main()
