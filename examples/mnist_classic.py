#!/usr/bin/env python3
"""Train the textbook network: 784-100-10 sigmoid units, mean squared error against one-hot targets, plain SGD on
mini-batches of 1000 with eta = 2.0 (the textbook reports about 91.5% on MNIST after 100 epochs).

    python examples/mnist_classic.py --epochs 100 --dataset mnist

Without --dataset it trains on MNIST when MNIST is found or can be downloaded, else on Fashion-MNIST (saying so
on stderr). The last line printed is exactly `test accuracy: NN.NN%`.
"""

import portanet as pn
from _cli import add_dataset_options, add_limit_and_verbose, parser, positive_int, start


def main(argv=None):
    p = parser(__doc__, epochs=100)
    add_dataset_options(p)
    p.add_argument("--batch-size", type=positive_int, default=1000, help="Training samples per step.")
    p.add_argument("--lr", type=float, default=2.0,
                   help="The textbook's eta, for its cost (half the squared error summed over the 10 outputs).")
    add_limit_and_verbose(p)
    args = p.parse_args(argv)
    device, (x, y), (xt, yt), _ = start(args, args.dataset)
    # one-hot float targets for MSE: the network regresses the 10 indicator outputs
    onehot, onehot_t = pn.one_hot(y, 10), pn.one_hot(yt, 10)
    model = pn.Sequential(pn.Flatten(), pn.Dense(784, 100), pn.Sigmoid(), pn.Dense(100, 10), pn.Sigmoid(),
                          device=device)
    # MSE's mean runs over the 10 outputs too; the textbook's cost is the sum over outputs divided by 2
    # and averaged over the batch, so eta 2.0 there is lr 2.0 * 10 / 2 = 10 here.
    opt = pn.optim.SGD(model.parameters(), lr=args.lr * 10 / 2)
    train = pn.DataLoader(x, onehot, batch_size=args.batch_size, shuffle=True, seed=args.seed, device=device)
    test = pn.DataLoader(xt, onehot_t, batch_size=1000, device=device)
    # MSE is a regression loss, so fit logs no accuracy unless asked: the argmax of the 10 outputs against the
    # one-hot target's is the textbook's "correct classification"
    pn.fit(model, pn.MSELoss(), opt, train, epochs=args.epochs, val_loader=test, metrics=("categorical_accuracy",),
           verbose=args.verbose)
    accuracy = pn.evaluate(model, test, metrics=("categorical_accuracy",))["categorical_accuracy"]
    print(f"test accuracy: {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
