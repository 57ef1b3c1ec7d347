#!/usr/bin/env python3
"""Train a small CNN (two 3x3 convolutions with max pooling, then two Dense layers) on MNIST or Fashion-MNIST.

    python examples/mnist_cnn.py --dataset fashion-mnist --epochs 5 --device cpu

Images go in as (batch, 1, 28, 28): channels first, as Conv2d expects. The last line printed is exactly
`test accuracy: NN.NN%`.
"""
import sys

import portanet as pn
from _cli import load_images, parser, setup


def parse(argv=None):
    p = parser(__doc__, epochs=5)
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    p.add_argument("--data-dir", default=None, help="directory with the four IDX files (default: searched)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training samples (quick runs)")
    p.add_argument("--verbose", type=int, default=1)
    return p.parse_args(argv)


def build(device):
    return pn.Sequential(pn.Conv2d(1, 32, 3, padding=1), pn.ReLU(), pn.MaxPool2d(2),
                         pn.Conv2d(32, 64, 3, padding=1), pn.ReLU(), pn.MaxPool2d(2),
                         pn.Flatten(), pn.Dense(64 * 7 * 7, 128), pn.ReLU(), pn.Dense(128, 10), device=device)


def main(argv=None):
    args = parse(argv)
    device = setup(args)
    (x, y), (xt, yt) = load_images(args.dataset, args.data_dir)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    model = build(device)
    if args.verbose:
        model.summary((1, 28, 28))
    # uint8 (n, 28, 28) -> (n, 1, 28, 28): a view; the loader converts each batch on the device
    train = pn.DataLoader(x[:, None], y, batch_size=args.batch_size, shuffle=True, seed=args.seed, device=device)
    test = pn.DataLoader(xt[:, None], yt, batch_size=1000, device=device)
    pn.fit(model, pn.CrossEntropyLoss(), pn.optim.Adam(model.parameters(), lr=args.lr), train, epochs=args.epochs,
           val_loader=test, verbose=args.verbose)
    print(f"test accuracy: {100 * pn.evaluate(model, test)['accuracy']:.2f}%")


if __name__ == "__main__":
    sys.exit(main())
