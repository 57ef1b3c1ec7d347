#!/usr/bin/env python3
"""Train a small CNN (two 3x3 convolutions with max pooling, then two Dense layers) on MNIST or Fashion-MNIST and
print its test accuracy.

    python examples/mnist_cnn.py --dataset fashion-mnist --epochs 10 --device cpu

The network of Keras' mnist_convnet and PyTorch's examples/mnist: Conv2d(1, 32, 3, padding=1), ReLU, MaxPool2d(2),
Conv2d(32, 64, 3, padding=1), ReLU, MaxPool2d(2), Flatten, Dense(3136, 128), ReLU, Dense(128, 10), trained with Adam.
Images go in as (batch, 1, 28, 28): channels first, as Conv2d expects. Without --dataset it trains on MNIST when
MNIST is found or can be downloaded, else on Fashion-MNIST (saying so on stderr). The last line printed is exactly
`test accuracy: NN.NN%`.
"""
import portanet as pn
from _cli import add_dataset_options, add_run_options, parser, positive_int, report, resume, start


def parse(argv=None):
    p = parser(__doc__, epochs=10)
    add_dataset_options(p)
    p.add_argument("--batch-size", type=positive_int, default=128, help="Training samples per step.")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate.")
    add_run_options(p)
    return p.parse_args(argv)


def build(device):
    return pn.Sequential(pn.Conv2d(1, 32, 3, padding=1), pn.ReLU(), pn.MaxPool2d(2),
                         pn.Conv2d(32, 64, 3, padding=1), pn.ReLU(), pn.MaxPool2d(2),
                         pn.Flatten(), pn.Dense(64 * 7 * 7, 128), pn.ReLU(), pn.Dense(128, 10), device=device)


def main(argv=None):
    args = parse(argv)
    device, (x, y), (xt, yt), dataset = start(args, args.dataset)
    model = build(device)
    if args.verbose:
        model.summary((1, 28, 28))
    opt = pn.optim.Adam(model.parameters(), lr=args.lr)
    # uint8 (n, 28, 28) -> (n, 1, 28, 28): a view; the loader converts each batch on the device
    train = pn.DataLoader(x[:, None], y, batch_size=args.batch_size, shuffle=True, seed=args.seed, device=device)
    test = pn.DataLoader(xt[:, None], yt, batch_size=1000, device=device)
    callbacks, remaining = resume(args, model, opt, train)
    print(f"{dataset}: {len(x)} training / {len(xt)} test images on {device}; adam lr={args.lr}")
    history = pn.fit(model, pn.CrossEntropyLoss(), opt, train, epochs=remaining, val_loader=test,
                     callbacks=callbacks, verbose=args.verbose)
    report(args, history, model, test)


if __name__ == "__main__":
    main()
