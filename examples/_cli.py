"""What every example shares: --device / --epochs / --seed, help that shows defaults, one-line errors instead of
tracebacks, and the same data rule as `make demo`: MNIST when it is here, else Fashion-MNIST, said on stderr."""
import argparse
import os
import sys

import portanet as pn

DEVICES = "cpu, gpu, gpu:N, auto, torch:cpu, torch:cuda:N or strict:device1"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The module docstring as written (its paragraphs and usage line), and each option's default after its help;
    options without a default (None) or flags that are off say so in their own words instead of '(default: None)'."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def parser(doc, epochs, epochs_help="Number of passes over the training data."):
    p = argparse.ArgumentParser(description=doc.strip(), formatter_class=HelpFormatter)
    p.add_argument("--device", default="cpu", help=f"Where to train: {DEVICES}.")
    p.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    p.add_argument("--seed", type=int, default=0, help="Seed for the initial weights, shuffling and augmentation.")
    return p


def add_dataset_options(p):
    """--dataset and --data-dir for the examples that train on 28x28 images."""
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None,
                   help="Which images to train on. Without it: MNIST when it is found or can be downloaded, "
                        "else Fashion-MNIST (said on stderr), as `make demo` does.")
    add_data_dir(p)


def add_data_dir(p):
    """--data-dir: where the IDX files are, for every example that reads MNIST or Fashion-MNIST."""
    p.add_argument("--data-dir", default=None,
                   help="Directory holding the four IDX files (.gz or raw). Without it: $PORTANET_DATA, "
                        "~/.cache/portanet and, for Fashion-MNIST, /usr/share/datasets/fashion-mnist are searched.")


def add_run_options(p, saved="the model and optimizer"):
    """--checkpoint, --plot, --limit and --verbose, for the examples that train on the 28x28 image sets."""
    p.add_argument("--checkpoint", default=None,
                   help=f"File to save {saved} to after every epoch; when it exists, training resumes from it "
                        "up to --epochs in all.")
    p.add_argument("--plot", default=None,
                   help="PNG file to write the loss and accuracy curves to (needs matplotlib: "
                        "pip install 'portanet[plot]').")
    add_limit_and_verbose(p)


def add_limit_and_verbose(p):
    """--limit and --verbose, for every example that trains on the 28x28 image sets."""
    p.add_argument("--limit", type=positive_int, default=None,
                   help="Train on the first N training images only, for quick runs.")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="1: a progress bar on a terminal, one line per epoch elsewhere; 2: one line per epoch; "
                        "0: only the results.")


def positive_int(text):
    """The type of --limit and --batch-size: the scripts slice x[:limit], which would take every image for 0 and
    drop the last ones for a negative number, and a batch needs at least one sample."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return n


def resume(args, model, optimizer, loader, callbacks=()):
    """(callbacks, epochs still to run) for --checkpoint: load it when it exists (a file that cannot be resumed
    from exits with the reason, and is left as it is), and save after every epoch."""
    callbacks, remaining = list(callbacks), args.epochs
    if args.checkpoint:
        if os.path.exists(args.checkpoint):
            try:
                meta = pn.load(args.checkpoint, model, optimizer, loader=loader)
            except pn.CheckpointError as e:
                sys.exit(f"error: cannot resume from {args.checkpoint}: {e}")
            remaining = max(0, args.epochs - int(meta["epoch"]))
            print(f"resumed from {args.checkpoint} after epoch {meta['epoch']}; {remaining} to go")
        callbacks.append(pn.ModelCheckpoint(args.checkpoint, save_best_only=False))
    return callbacks, remaining


def report(args, history, model, test):
    """Write --plot's curves, then the last line every image example prints: `test accuracy: NN.NN%`."""
    if args.plot and history.epoch:
        history.plot(args.plot)
        print(f"curves written to {args.plot}")
    print(f"test accuracy: {100 * pn.evaluate(model, test)['accuracy']:.2f}%")


def setup(args):
    """Resolve --device (a bad one exits with one line saying why) and seed portanet. Returns the Device."""
    try:
        device = pn.device(args.device)
    except (pn.DeviceError, pn.DeviceUnavailableError) as e:
        sys.exit(f"error: {e}")
    pn.seed(args.seed)
    return device


def start(args, dataset):
    """What the image examples do before they build a model: stop at once when --plot asks for a plot that could not
    be drawn, resolve --device and seed (setup), load ``dataset`` (load_images) and keep the first --limit training
    images. Returns (device, (x, y), (xt, yt), the dataset's name)."""
    if getattr(args, "plot", None):             # (mnist_classic.py has no --plot)
        matplotlib_or_exit("--plot")
    device = setup(args)
    (x, y), (xt, yt), name = load_images(dataset, args.data_dir)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    return device, (x, y), (xt, yt), name


def load_images(dataset, data_dir):
    """((x, y), (xt, yt), name) for --dataset (None: MNIST, else Fashion-MNIST). A dataset that cannot be found
    exits with the loader's explanation and the option that fixes it."""
    if dataset == "fashion-mnist":
        return _load(pn.datasets.load_fashion_mnist, data_dir, "") + ("fashion-mnist",)
    if dataset == "mnist":
        return _load(pn.datasets.load_mnist, data_dir,
                     "\nWith this script, --dataset fashion-mnist trains on Fashion-MNIST instead.") + ("mnist",)
    try:
        return pn.datasets.load_mnist(data_dir) + ("mnist",)
    except pn.DatasetError:
        print("note: MNIST was not found and could not be downloaded: training on Fashion-MNIST instead "
              "(--dataset mnist says where MNIST was looked for; --dataset fashion-mnist skips the search)",
              file=sys.stderr, flush=True)
    return _load(pn.datasets.load_fashion_mnist, data_dir, "") + ("fashion-mnist",)


def _load(load, data_dir, hint):
    try:
        return load(data_dir)
    except pn.DatasetError as e:
        sys.exit(f"error: {e}{hint}")


def have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def matplotlib_or_exit(option):
    """Stop before training when ``option`` asks for a plot that could not be drawn after it."""
    if not have_matplotlib():
        sys.exit(f"error: {option} needs matplotlib, which is not installed: pip install 'portanet[plot]' "
                 f"(or run without {option})")
