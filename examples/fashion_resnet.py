#!/usr/bin/env python3
"""Train a small residual network (three stages of basic blocks, global average pooling) on Fashion-MNIST and
print its test accuracy.

    python examples/fashion_resnet.py --epochs 15 --device cpu

The network: a 3x3 stem convolution to 32 channels and a 2x2 max pooling (the stem of He et al. 2016, "Deep Residual
Learning for Image Recognition", at MNIST's scale), then three stages at 14x14, 7x7 and 4x4 with 32, 64 and 128
channels, of 2, 2 and 1 basic blocks, ReLU(x + BN(conv(ReLU(BN(conv(x)))))), as in that paper. Between stages a
strided 3x3 convolution with BatchNorm and ReLU halves the size and doubles the channels, between the blocks as in a
plain network (the paper's downsampling blocks project their skip path instead, which
``Residual(..., shortcut=Conv2d(cin, cout, 1, stride=2))`` builds; this network was measured as it is). Then
GlobalAvgPool2d and one Dense layer to the 10 classes: 0.57 M parameters. The convolutions have no bias (the
BatchNorm after each adds one) and start with He's normal initialisation, the rule for ReLU networks. The sizes suit
a 2-core CPU: no stage runs at 28x28 beyond the stem, and at batch 128 every convolution's im2col columns stay under
32 MiB, the largest block glibc keeps in its heap (a larger one is mapped afresh on every step, page by page, which
costs more than the convolution's GEMM).

Training, the practice of the CIFAR ResNets scaled to 15 epochs: SGD with Nesterov momentum 0.9, learning rate 0.1
annealed to zero by a cosine over the epochs (Loshchilov and Hutter, SGDR; stepped once per epoch), weight decay
5e-4 on every parameter, batch 128, cross-entropy with label smoothing 0.1 (Szegedy et al. 2016). Augmentation:
each training image shifted by up to 2 pixels in each direction and mirrored left-right with probability 1/2 (a
mirrored shirt is still a shirt; the test images are left as they are). Images go in as (batch, 1, 28, 28), channels
first. The last line printed is exactly `test accuracy: NN.NN%`.
"""
import portanet as pn
from _cli import add_data_dir, add_run_options, parser, positive_int, report, resume, start


def parse(argv=None):
    p = parser(__doc__, epochs=15, epochs_help="Number of passes over the training data; the cosine schedule "
                                                "anneals the learning rate to zero over them.")
    add_data_dir(p)
    p.add_argument("--batch-size", type=positive_int, default=128, help="Training samples per step.")
    p.add_argument("--lr", type=float, default=0.1, help="SGD's learning rate at the first epoch.")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD's L2 weight decay.")
    p.add_argument("--no-augment", action="store_true",
                   help="Train on the images as they are, without random shifts and mirroring.")
    add_run_options(p, saved="the model, optimizer and schedule")
    return p.parse_args(argv)


def conv_bn(cin, cout, stride=1):
    """A 3x3 convolution (no bias: the BatchNorm has one) and its BatchNorm."""
    return [pn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, init="he_normal"), pn.BatchNorm2d(cout)]


def basic_block(channels):
    """He et al.'s basic block: the ReLU comes after the sum, so the skip path is the identity."""
    return [pn.Residual(*conv_bn(channels, channels), pn.ReLU(), *conv_bn(channels, channels)), pn.ReLU()]


def build(device, widths=(32, 64, 128), blocks=(2, 2, 1)):
    layers = [*conv_bn(1, widths[0]), pn.ReLU(), pn.MaxPool2d(2)]
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        if stage:                                 # halve the size, double the channels
            layers += [*conv_bn(widths[stage - 1], width, stride=2), pn.ReLU()]
        for _ in range(count):
            layers += basic_block(width)
    layers += [pn.GlobalAvgPool2d(), pn.Dense(widths[-1], 10)]
    return pn.Sequential(*layers, device=device)


def main(argv=None):
    args = parse(argv)
    device, (x, y), (xt, yt), _ = start(args, "fashion-mnist")
    model = build(device)
    if args.verbose:
        model.summary((1, 28, 28))
    opt = pn.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    schedule = pn.optim.CosineAnnealingLR(opt, T_max=args.epochs)     # saved with the optimizer
    augment = None if args.no_augment else pn.transforms.Compose(pn.transforms.RandomShift(2),
                                                                  pn.transforms.RandomFlip())
    # uint8 (n, 28, 28) -> (n, 1, 28, 28): a view; the loader converts and augments each batch on the device
    train = pn.DataLoader(x[:, None], y, batch_size=args.batch_size, shuffle=True, seed=args.seed, device=device,
                          transform=augment)
    test = pn.DataLoader(xt[:, None], yt, batch_size=1000, device=device)
    callbacks, remaining = resume(args, model, opt, train, callbacks=[pn.LearningRateScheduler(schedule)])
    print(f"fashion-mnist: {len(x)} training / {len(xt)} test images on {device}; sgd lr={args.lr} "
          f"(cosine over {args.epochs} epochs), augmentation: {augment or 'none'}")
    history = pn.fit(model, pn.CrossEntropyLoss(label_smoothing=0.1), opt, train, epochs=remaining,
                     val_loader=test, callbacks=callbacks, verbose=args.verbose)
    report(args, history, model, test)


if __name__ == "__main__":
    main()
