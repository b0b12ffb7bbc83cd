"""The ``electra`` command: thin wrappers that parse arguments, build a config and call the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from electra.config import load_config_file, parse_assignments
from electra.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print the usage block too)
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def _presets_epilog() -> str:
    from electra.image.config import PRESET_HELP

    return "presets:\n" + "\n".join(f"  {k:8s} {v}" for k, v in PRESET_HELP.items()) + \
        "\n\nAny config key can be overridden: key=value or --key value (e.g. ema=0.999, --width 32)."


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="electra", description="Generator–discriminator learning: images (GAN, VAE, VAE-GAN) "
                                                 "and ELECTRA text pre-training.")
    tracks = parser.add_subparsers(dest="track", required=True, parser_class=_Parser)
    image = tracks.add_parser("image", help="28×28 image generation (the founding description's GAN, VAE, VAE-GAN)")
    cmds = image.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = cmds.add_parser("train", help="train a preset", epilog=_presets_epilog(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--preset", default=None, help="named config (default: dcgan)")
    train.add_argument("--config", default=None, help="JSON/TOML file of config keys applied over the preset")
    train.add_argument("--dataset", default=None, help="embedded (default, 5,000 real digits shipped offline), "
                                                       "mnist, fashion-mnist, folder")
    train.add_argument("--data-dir", default=None, help="folder with the IDX files or images")
    train.add_argument("--download", action="store_const", const=True, default=None,
                       help="fetch missing MNIST/Fashion-MNIST files (checksums verified)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None)
    length.add_argument("--steps", type=int, default=None)
    train.add_argument("--minutes", type=float, default=None, help="wall-clock budget; stops and checkpoints")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--labels", type=int, default=None, help="ssgan: labelled images (class-balanced draw)")
    train.add_argument("--out", default=None, help="run folder (default runs/image-PRESET-TIME)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                       help="end at this step with a checkpoint (continue later with --resume)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = cmds.add_parser("sample", help="draw images from a trained run")
    sample.add_argument("run_dir")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--out", required=True, help="x.png (grid), x.npy (N×28×28 uint8) or a folder (PNGs)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--interpolate", action="store_true", help="N rows of latent interpolations (PNG)")
    sample.add_argument("--digit", type=int, default=None, help="a conditional run (cdcgan): draw this class")
    sample.add_argument("--class", dest="class_name", default=None,
                        help="a conditional run trained on class sub-folders: draw the class of this name")

    cmds.add_parser("presets", help="list the named configs")

    ev = cmds.add_parser("eval", help="LeNet-FID, KID, precision/recall, class coverage beside the real-data floor")
    ev.add_argument("target", help="run folder, N×28×28 .npy, or folder of 28×28 PNGs")
    ev.add_argument("--dataset", default=None, help="reference data (default: the run's, or mnist)")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--n", type=int, default=10_000, help="images to sample from a run folder")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-floor", action="store_true", help="skip scoring real training images")
    ev.add_argument("--iwae-k", type=int, default=5000, help="binarize=true VAE: importance samples per digit")
    ev.add_argument("--iwae-images", type=int, default=1000, help="binarize=true VAE: test digits scored for NLL")

    pr = cmds.add_parser("probe", help="linear probe of the discriminator's features vs a random discriminator")
    pr.add_argument("run_dir")
    pr.add_argument("--dataset", default=None)
    pr.add_argument("--data-dir", default=None)
    pr.add_argument("--n-train", type=int, default=10_000)

    cl = cmds.add_parser("classify", help="the digits a semi-supervised run's discriminator sees (ssgan)")
    cl.add_argument("run_dir")
    cl.add_argument("images", nargs="?", default=None,
                    help="N×28×28 .npy or a folder of 28×28 PNGs (default: the data set's test split)")
    cl.add_argument("--dataset", default=None)
    cl.add_argument("--data-dir", default=None)
    cl.add_argument("--out", default=None, help="predictions CSV (default: beside the images)")

    ex = cmds.add_parser("export", help="the run's generator as an ONNX model (noise [and class] → uint8 images)")
    ex.add_argument("run_dir")
    ex.add_argument("--onnx", required=True, metavar="FILE.onnx")

    text = tracks.add_parser("text", help="ELECTRA replaced-token-detection pre-training of text encoders")
    tcmds = text.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tok = tcmds.add_parser("tokenizer", help="train a lower-cased WordPiece vocabulary")
    tok.add_argument("--files", nargs="+", required=True)
    tok.add_argument("--vocab-size", type=int, default=8192)
    tok.add_argument("--out", required=True)

    prep = tcmds.add_parser("prepare", help="tokenise and pack a corpus into memory-mapped shards")
    prep.add_argument("--files", nargs="+", required=True)
    prep.add_argument("--tokenizer", required=True, help="tokenizer folder, vocab.txt or tokenizer.json")
    prep.add_argument("--seq-len", type=int, default=128)
    prep.add_argument("--out", required=True)
    prep.add_argument("--encoding", default="utf-8")
    prep.add_argument("--errors", default="strict", choices=["strict", "replace", "ignore"])
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--documents", default="blank-line", choices=["blank-line", "file"],
                      help="what ends a document: a blank line (the official convention) or only the end of a file (for text whose blank lines separate paragraphs: fuller rows, less padding)")

    pre = tcmds.add_parser("pretrain", help="ELECTRA (rtd) or masked-LM (mlm) pre-training",
                           epilog="presets: tiny (CPU, minutes), small, base, large (the paper's sizes). Any config "
                                  "key can be overridden: key=value or --key value.")
    pre.add_argument("--data", default=None, help="prepared shards folder")
    pre.add_argument("--files", nargs="+", default=None, help="text files, prepared into the run folder")
    pre.add_argument("--tokenizer", default=None)
    pre.add_argument("--vocab-size", type=int, default=8192, help="with --files and no --tokenizer")
    pre.add_argument("--preset", default=None)
    pre.add_argument("--objective", default=None, choices=["rtd", "mlm"])
    pre.add_argument("--steps", type=int, default=None)
    pre.add_argument("--minutes", type=float, default=None)
    pre.add_argument("--batch-size", type=int, default=None)
    pre.add_argument("--seq-len", type=int, default=None)
    pre.add_argument("--lr", type=float, default=None)
    pre.add_argument("--seed", type=int, default=None)
    pre.add_argument("--out", default=None)
    pre.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    pre.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                     help="end at this step with a checkpoint (continue later with --resume)")
    pre.add_argument("--init-from", default=None, metavar="HF_DIR")
    pre.add_argument("--encoding", default="utf-8")
    pre.add_argument("--errors", default="strict", choices=["strict", "replace", "ignore"])
    pre.add_argument("--documents", default="blank-line", choices=["blank-line", "file"],
                     help="with --files: what ends a document (see 'prepare --help')")
    pre.add_argument("--quiet", action="store_true")

    ft = tcmds.add_parser("finetune", help="fine-tune a discriminator on a GLUE task (official recipe)",
                          epilog="Other keys: layer_decay, warmup_frac, batch_size, max_seq_len, weight_decay, "
                                 "max_train_examples, group_by_length, dropout (key=value; dropout: the model's "
                                 "own unless given).")
    ft.add_argument("model", nargs="?", help="run folder or HF ELECTRA discriminator directory")
    ft.add_argument("--task", help="cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli")
    ft.add_argument("--data-dir", help="GLUE folder (holding CoLA/, SST-2/, …) or the task's folder")
    ft.add_argument("--resume", default=None, metavar="FINETUNE_DIR",
                    help="continue a fine-tuning folder: finished seeds are kept, the rest trained")
    ft.add_argument("--seeds", type=int, default=None, help="runs with seeds seed..seed+N-1; the median is reported")
    ft.add_argument("--epochs", type=int, default=None)
    ft.add_argument("--lr", type=float, default=None,
                    help="peak lr (default: the recipe by model width: Small 3e-4, Base 1e-4, Large 5e-5)")
    ft.add_argument("--seed", type=int, default=None)
    ft.add_argument("--out", default=None)
    ft.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                    help="end the seed being trained at STEP with a checkpoint; continue with --resume")
    ft.add_argument("--quiet", action="store_true")

    pd = tcmds.add_parser("predict", help="GLUE-submission predictions for a task's test split")
    pd.add_argument("model", help="a fine-tuned model (finetune's seed-N folder or its model/)")
    pd.add_argument("--task", required=True)
    pd.add_argument("--data-dir", required=True)
    pd.add_argument("--out", default=None)

    fl = tcmds.add_parser("fill", help="fill [MASK] tokens with the generator")
    fl.add_argument("model", help="run folder or HF ELECTRA generator directory")
    fl.add_argument("text")
    fl.add_argument("--top-k", type=int, default=5)
    fl.add_argument("--iterative", action="store_true", help="fill one mask at a time, most confident first")
    fl.add_argument("--json", action="store_true")

    ev = tcmds.add_parser("eval", help="held-out masked-LM and discriminator figures of a run or HF model")
    ev.add_argument("model", help="text run folder, a folder with HF generator/ + discriminator/, or an HF generator")
    ev.add_argument("--files", nargs="+", required=True, help="held-out text (plain, .gz, .bz2 or .xz)")
    ev.add_argument("--max-examples", type=int, default=2000, help="first N packed examples (0: all)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--seq-len", type=int, default=None, help="packed example length (default: the run's, or 128)")
    ev.add_argument("--mask-prob", type=float, default=None,
                    help="share of positions masked (default: the run's); fix it to compare runs trained at others")
    ev.add_argument("--out", default=None, help="JSON report (default: MODEL/eval-FILE.json)")

    bl = tcmds.add_parser("blimp", help="BLiMP minimal-pair accuracy (generator PLL and discriminator)")
    bl.add_argument("model", help="text run folder, HF folder(s) of an ELECTRA generator/discriminator")
    bl.add_argument("--data-dir", required=True, help="folder of BLiMP .jsonl files (one per phenomenon)")
    bl.add_argument("--per-phenomenon", type=int, default=None, metavar="N",
                    help="a fixed seeded subset of N pairs per phenomenon (quick runs)")
    bl.add_argument("--batch-size", type=int, default=128)
    bl.add_argument("--pll", choices=("original", "word-l2r"), default="original",
                    help="generator score: Salazar et al.'s PLL, or PLL-word-l2r (a word's later pieces masked too)")
    bl.add_argument("--out", default=None, help="JSON report (default: MODEL/blimp.json)")

    tx = tcmds.add_parser("export", help="a run's discriminator and generator as ONNX models (with the tokenizer)")
    tx.add_argument("model", help="text run folder or HF ELECTRA directory")
    tx.add_argument("--onnx", required=True, metavar="DIR", help="a new folder for the .onnx files")

    dt = tcmds.add_parser("detect", help="per-token probability that a token was replaced (the discriminator)")
    dt.add_argument("model", help="run folder or HF ELECTRA discriminator directory")
    dt.add_argument("text")
    dt.add_argument("--threshold", type=float, default=0.5)
    dt.add_argument("--json", action="store_true")

    demo = tracks.add_parser("demo", help="a local web page to try a trained run (the demo extra: Gradio)")
    demo.add_argument("run_dir", help="image run, text run or HF ELECTRA folder")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    return parser


def _text_use(args, extra: list[str]) -> int:
    import json

    if args.command == "finetune":
        from electra.text.finetune import finetune

        overrides = {k: getattr(args, k) for k in ("seeds", "epochs", "lr", "seed") if getattr(args, k) is not None}
        overrides.update(parse_assignments(extra))
        if args.resume and (args.model or args.task or args.data_dir or args.out):
            raise UserError("--resume takes the fine-tuning folder's own model, task and data; drop them")
        result = finetune(args.model, args.task, args.data_dir, out=args.out, overrides=overrides,
                          progress=not args.quiet, resume=args.resume, stop_at=args.stop_at)
        if "stopped_at" in result:
            print(f"stopped seed {result['stopped_at']['seed']} at step {result['stopped_at']['step']}; continue "
                  f"with: electra text finetune --resume {result['out']}")
            return 0
        for r in result["seeds"]:
            print(f"seed {r['seed']}: " + "; ".join(f"{split} " + ", ".join(f"{m} {v:.4f}" for m, v in sc.items())
                                                  for split, sc in r["scores"].items()))
        print(f"median {result['main_metric']}: {result['main_score']:.4f}  ({result['out']}/results.json)")
        return 0
    if args.command == "predict":
        from electra.text.finetune import predict

        for path in predict(args.model, args.task, args.data_dir, args.out):
            print(f"wrote {path}")
        return 0
    if args.command == "fill":
        from electra.text.generate import Filler

        filled = Filler(args.model).fill(args.text, args.top_k, args.iterative)
        if args.json:
            print(json.dumps({"text": filled.text, "candidates": filled.candidates}))
        else:
            print(filled.text)
            for i, cands in enumerate(filled.candidates, 1):
                print(f"  [MASK] {i}: " + ", ".join(f"{t} {p:.3f}" for t, p in cands))
        return 0
    from electra.text.generate import Detector

    if not 0 < args.threshold < 1:
        raise UserError(f"--threshold must lie in (0, 1), got {args.threshold}")
    found = Detector(args.model).detect(args.text)
    if args.json:
        print(json.dumps({"tokens": found.tokens, "replaced_probability": [round(p, 4) for p in found.probabilities],
                          "flagged": found.flagged(args.threshold)}))
    else:
        print(found.render(args.threshold))
        print("  " + " ".join(f"{t}:{p:.2f}" for t, p in zip(found.tokens, found.probabilities)))
    return 0


def _text(args, extra: list[str]) -> int:
    if args.command in ("finetune", "predict", "fill", "detect"):
        return _text_use(args, extra)
    if args.command == "eval":
        from electra.text.heldout import evaluate_text, format_figures

        if args.max_examples < 0 or args.batch_size < 1:
            raise UserError("--max-examples must be ≥ 0 and --batch-size ≥ 1")
        report = evaluate_text(args.model, args.files, args.max_examples or None, args.batch_size, args.out,
                               args.seq_len, args.mask_prob)
        print(format_figures(report))
        print(f"wrote {report['written_to']}")
        return 0
    if args.command == "blimp":
        from electra.text.blimp import format_blimp, score_blimp

        if (args.per_phenomenon is not None and args.per_phenomenon < 1) or args.batch_size < 1:
            raise UserError("--per-phenomenon and --batch-size must be at least 1")
        report = score_blimp(args.model, args.data_dir, args.per_phenomenon, args.batch_size, args.out,
                             args.pll)
        print(format_blimp(report))
        print(f"wrote {report['written_to']}")
        return 0
    if args.command == "export":
        from electra.text.onnx_export import export_text

        info = export_text(args.model, args.onnx)
        print(f"wrote {args.onnx}: {', '.join(m['file'] for m in info['models'].values())}, tokenizer.json "
              f"(opset {info['opset']})")
        return 0
    if args.command == "tokenizer":
        from electra.text.tokenizer import train_tokenizer

        print(f"wrote {train_tokenizer(args.files, args.vocab_size, args.out)}")
        return 0
    if args.command == "prepare":
        import json

        from electra.text.corpus import prepare_corpus

        out = prepare_corpus(args.files, args.tokenizer, args.seq_len, args.out, args.encoding, args.errors,
                             seed=args.seed, documents=args.documents)
        m = json.loads((out / "manifest.json").read_text())
        print(f"wrote {out}: {m['rows']} examples, {m['tokens']} tokens, {m['documents']} documents, "
              f"{len(m['shards'])} shard(s), {100 * m['tokens'] / (m['rows'] * m['seq_len']):.0f}% of row slots filled")
        return 0
    from electra.text.config import DEFAULT_PRESET, preset_config
    from electra.text.pretrain import pretrain

    overrides = {k: getattr(args, k) for k in ("objective", "steps", "minutes", "batch_size", "seq_len", "lr", "seed")
                 if getattr(args, k) is not None}
    overrides.update(parse_assignments(extra))
    if args.resume:
        if args.preset or args.data or args.files:
            raise UserError("--resume takes the run folder's own config and data; drop --preset/--data/--files")
        pretrain(resume=args.resume, overrides=overrides, progress=not args.quiet, stop_at=args.stop_at)
        return 0
    cfg = preset_config(args.preset or DEFAULT_PRESET)
    pretrain(cfg, data=args.data, files=args.files, tokenizer=args.tokenizer, out=args.out,
             init_from=args.init_from, overrides=overrides, vocab_size=args.vocab_size, encoding=args.encoding,
             errors=args.errors, documents=args.documents, progress=not args.quiet, stop_at=args.stop_at)
    return 0


def _image_train(args, extra: list[str]) -> int:
    from electra.image.config import DEFAULT_PRESET, preset_config
    from electra.image.train import train_image

    overrides = {}
    if args.config:
        overrides.update(load_config_file(args.config))
    for key in ("dataset", "data_dir", "download", "epochs", "steps", "minutes", "batch_size", "lr", "seed", "labels"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    if args.epochs is not None:
        overrides["steps"] = None
    overrides.update(parse_assignments(extra))
    if args.resume:
        if args.preset:
            raise UserError("--preset cannot be combined with --resume (the run folder has its config)")
        train_image(resume=args.resume, overrides=overrides, progress=not args.quiet, stop_at=args.stop_at)
        return 0
    cfg = preset_config(args.preset or DEFAULT_PRESET)
    train_image(cfg, out=args.out, overrides=overrides, progress=not args.quiet, stop_at=args.stop_at)
    return 0


def dispatch(args, extra: list[str]) -> int:
    if args.track == "demo":
        if extra:
            raise UserError(f"unexpected arguments: {' '.join(extra)}")
        from electra.demo.app import serve

        return serve(args.run_dir, args.host, args.port)
    if args.track == "text":
        if args.command not in ("pretrain", "finetune") and extra:
            raise UserError(f"unexpected arguments: {' '.join(extra)}")
        return _text(args, extra)
    if args.command == "train":
        return _image_train(args, extra)
    if extra:
        raise UserError(f"unexpected arguments: {' '.join(extra)}")
    if args.command == "presets":
        from electra.image.config import PRESET_HELP

        for name, text in PRESET_HELP.items():
            print(f"{name:8s} {text}")
        return 0
    if args.command == "sample":
        from electra.image.sampling import sample_run

        path = sample_run(args.run_dir, args.n, args.out, seed=args.seed, interpolate=args.interpolate,
                          digit=args.digit, class_name=args.class_name)
        print(f"wrote {path}")
        return 0
    if args.command == "eval":
        from electra.image.evaluate import evaluate, format_report

        report = evaluate(args.target, args.dataset, args.data_dir, n=args.n, seed=args.seed, floor=not args.no_floor,
                          iwae_k=args.iwae_k, iwae_images=args.iwae_images)
        print(format_report(report))
        print(f"wrote {report['written_to']}")
        return 0
    if args.command == "export":
        from electra.image.onnx_export import export_generator

        info = export_generator(args.run_dir, args.onnx)
        print(f"wrote {info['onnx']} (opset {info['opset']}; inputs {', '.join(info['inputs'])}; output images "
              f"uint8 [batch, 28, 28])")
        return 0
    if args.command == "classify":
        from electra.image.semi_supervised import classify_target

        report = classify_target(args.run_dir, args.images, args.dataset, args.data_dir, args.out)
        accuracy = f"; accuracy {100 * report['accuracy']:.2f}% (error {100 * report['error']:.2f}%)" \
            if "accuracy" in report else ""
        print(f"classified {report['n']} images (per class: {report['counts']}){accuracy}; wrote "
              f"{report['written_to']}")
        return 0
    if args.command == "probe":
        from electra.core.files import write_json
        from electra.image.probe import probe

        result = probe(args.run_dir, args.dataset, args.data_dir, n_train=args.n_train)
        print(f"linear probe on {result['dataset']} ({result['n_train']} train / {result['n_test']} test): "
              f"trained D {result['trained_discriminator_accuracy']:.4f}, "
              f"random D {result['random_discriminator_accuracy']:.4f}")
        write_json(Path(args.run_dir) / "probe.json", result)
        return 0
    raise UserError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from electra.core import distributed

    try:
        distributed.setup()  # joins torchrun's process group when launched by it; a no-op otherwise
        args, extra = build_parser().parse_known_args(argv)
        return dispatch(args, extra)
    except UserError as exc:   # one line, whatever a message quotes from the user's files
        print(f"electra: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("electra: interrupted (a checkpoint was saved if training had started)", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permission denied …: the user's environment, not a bug
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"electra: error:{name} {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()


if __name__ == "__main__":
    raise SystemExit(main())
