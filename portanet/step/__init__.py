"""Step-level speed, in one place. Layers, losses and optimizers are written as their textbook definitions; this
package plans how a training step runs on a given backend and may swap in fused versions of their parts.

    flat.py        FlatGroup: an optimizer group's parameters, gradients and state as views into one contiguous
                   buffer per dtype, so an update is one launch (one C call on NumPy) for every parameter
    fusion.py      the model as the backend runs it fastest: Dense + ReLU pairs, bias and ReLU kernels
    sinks.py       SGD momentum on host backends: weight-gradient GEMMs straight into the momentum buffer (fit only)
    capture.py     whole-step CUDA graphs (torch:cuda through torch.cuda.CUDAGraph, CuPy through its graph API)
    train_step.py  TrainStep: one planned training step (zero_grad, forward, loss, backward, update), what fit runs

Nothing is imported here: optim/optimizer.py imports flat.py, and the rest import layers and optimizers.
"""
