"""target_acc and label_acc of DIAT runs and of a StarGAN run on the same attribute and test images.

    python benchmarks/diat_vs_stargan.py --diat runs/diat_a runs/diat_none --stargan runs/stargan_bold

The test images are the embedded styled test digits WITHOUT the attribute (DIAT's domain A, in order).
DIAT translates them with its predict 'AtoB'. StarGAN translates them to their own labels with the
attribute set to 1 (its predict 'to_target'; the other labels of its `data.digits_attrs` kept as the
digits have them), so a StarGAN trained on all four styles or on the one attribute alone
(`--config.data.digits_attrs=Bold`) is judged on the same single-attribute task. Both are judged by
`translate.methods.diat.judge`: target_acc = the attribute classifier reads the attribute,
label_acc = the styled-digit classifier reads the source's digit. Prints one table row per run.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def stargan_translate(workdir: str, attribute: str, images: np.ndarray, batch: int = 100):
  """StarGAN's translations of `images` (the styled test digits without `attribute`, in order) to
  their labels with `attribute` set."""
  from translate import inference
  from translate.data import digits
  p = inference.Predictor(workdir)
  names = list(p.config.model.label_names)
  if attribute not in names:
    raise ValueError(f"{workdir}: StarGAN was trained on {names}, not on {attribute!r}.")
  if list(p.config.data.sources) != ["digits"]:
    raise ValueError(f"{workdir}: expected a StarGAN run on the styled digits alone "
                     f"(data.sources={list(p.config.data.sources)}).")
  data = digits.load_styled_split("test")
  keep = data["attributes"][:, digits.STYLE_ATTRIBUTES.index(attribute)] == 0
  expected = data["image"][keep].astype(np.float32) / 127.5 - 1.0
  if expected.shape != images.shape or np.max(np.abs(expected - images)) > 1e-6:
    raise RuntimeError("The styled test digits without the attribute differ from DIAT's test sources.")
  c = data["attributes"][keep][:, [digits.STYLE_ATTRIBUTES.index(n) for n in names]].copy()
  c[:, names.index(attribute)] = 1.0
  out = [p.predict("to_target", images=images[i:i + batch], target=c[i:i + batch])["image"]
         for i in range(0, len(images), batch)]
  return np.concatenate(out), p.step


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--diat", nargs="*", default=[], help="DIAT workdirs (digits preset)")
  parser.add_argument("--stargan", nargs="*", default=[], help="StarGAN workdirs (digits)")
  parser.add_argument("--attribute", default="", help="default: the first DIAT run's attribute")
  parser.add_argument("--json", default="", help="also write the rows to this file")
  parser.add_argument("--figure", default="", help="also write a PNG: the first --figure_rows test "
                      "sources, then one column per run")
  parser.add_argument("--figure_rows", type=int, default=16)
  args = parser.parse_args(argv)
  from translate import inference, workdir as workdirs
  from translate.methods import diat
  if not args.diat and not args.attribute:
    parser.error("give --attribute when no DIAT run is given")
  first = workdirs.load_config(args.diat[0]) if args.diat else None
  attribute = args.attribute or first.data.attribute
  config = first if first is not None else None
  if config is None:  # the digits preset's data, for the test sources
    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location(
        "diat_config", pathlib.Path(__file__).resolve().parents[1] / "configs" / "diat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("digits")
  config.data.attribute = attribute
  images, labels = diat.test_sources(config)
  rows = [{"run": "untranslated sources", **diat.judge(attribute, images, labels)}]
  columns = {"source": images}
  for wd in args.diat:
    p = inference.Predictor(wd)
    if p.config.data.attribute != attribute:
      raise ValueError(f"{wd} transfers {p.config.data.attribute!r}, not {attribute!r}.")
    out = np.concatenate([p.predict("AtoB", images=images[i:i + 100])["image"]
                          for i in range(0, len(images), 100)])
    rows.append({"run": f"DIAT identity={p.config.loss.identity} stage={p.config.stage} "
                        f"step={p.step} ({wd})", **diat.judge(attribute, out, labels)})
    columns[f"DIAT {p.config.loss.identity} {wd}"] = out
  for wd in args.stargan:
    out, step = stargan_translate(wd, attribute, images)
    rows.append({"run": f"StarGAN step={step} ({wd})", **diat.judge(attribute, out, labels)})
    columns[f"StarGAN {wd}"] = out
  print(f"attribute {attribute!r}, {len(images)} styled test digits without it\n")
  print("| run | target_acc | label_acc |\n| --- | --- | --- |")
  for r in rows:
    print(f"| {r['run']} | {r['target_acc']:.3f} | {r['label_acc']:.3f} |")
  if args.figure:
    from translate import visualize
    visualize.save_png(visualize.make_grid(columns, max_rows=args.figure_rows), args.figure)
    print(f"\n{args.figure}: columns " + " | ".join(columns))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"attribute": attribute, "images": len(images), "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
