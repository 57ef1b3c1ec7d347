#!/usr/bin/env python3
"""Train a 784-256-256-10 ReLU MLP on MNIST or Fashion-MNIST and print its test accuracy.

    python examples/mnist_mlp.py --dataset fashion-mnist --epochs 10 --device cpu

Without --dataset it trains on MNIST when MNIST is found or can be downloaded, else on Fashion-MNIST (saying so
on stderr). The last line printed is exactly `test accuracy: NN.NN%`.
"""
import portanet as pn
from _cli import add_dataset_options, add_run_options, parser, positive_int, report, resume, start


def parse(argv=None):
    p = parser(__doc__, epochs=10)
    add_dataset_options(p)
    p.add_argument("--batch-size", type=positive_int, default=128, help="Training samples per step.")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="adam",
                   help="Adam, or SGD with momentum 0.9.")
    p.add_argument("--lr", type=float, default=None,
                   help="Learning rate. Without it: 1e-3 for adam, 0.05 for sgd.")
    add_run_options(p)
    return p.parse_args(argv)


def build(device):
    return pn.Sequential(pn.Flatten(), pn.Dense(784, 256), pn.ReLU(), pn.Dense(256, 256), pn.ReLU(),
                         pn.Dense(256, 10), device=device)


def main(argv=None):
    args = parse(argv)
    device, (x, y), (xt, yt), dataset = start(args, args.dataset)
    model = build(device)
    lr = args.lr or (1e-3 if args.optimizer == "adam" else 0.05)
    opt = (pn.optim.Adam(model.parameters(), lr=lr) if args.optimizer == "adam"
           else pn.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    train = pn.DataLoader(x, y, batch_size=args.batch_size, shuffle=True, seed=args.seed, device=device)
    test = pn.DataLoader(xt, yt, batch_size=1000, device=device)
    callbacks, remaining = resume(args, model, opt, train)
    print(f"{dataset}: {len(x)} training / {len(xt)} test images on {device}; {args.optimizer} lr={lr}")
    history = pn.fit(model, pn.CrossEntropyLoss(), opt, train, epochs=remaining, val_loader=test,
                     callbacks=callbacks, verbose=args.verbose)
    report(args, history, model, test)


if __name__ == "__main__":
    main()
