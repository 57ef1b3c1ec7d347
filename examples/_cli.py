"""What every example shares: --device / --epochs / --seed, and one-line errors instead of tracebacks."""
import argparse
import sys

import portanet as pn


def parser(doc, epochs, epochs_help=None):
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N, auto, torch:cpu, strict:device1 ...")
    p.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args):
    """Resolve --device (a bad one exits with one line saying why) and seed portanet. Returns the Device."""
    try:
        device = pn.device(args.device)
    except (pn.DeviceError, pn.DeviceUnavailableError) as e:
        sys.exit(f"error: {e}")
    pn.seed(args.seed)
    return device


def load_images(dataset, data_dir):
    """MNIST or Fashion-MNIST from the usual places; a missing dataset exits with the loader's explanation."""
    load = pn.datasets.load_mnist if dataset == "mnist" else pn.datasets.load_fashion_mnist
    try:
        return load(data_dir)
    except pn.DatasetError as e:
        sys.exit(f"error: {e}")
