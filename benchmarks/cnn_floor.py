"""How close the CNN's 30 epochs can come to 15 s here: the arithmetic alone, timed piece by piece.

Run: python benchmarks/cnn_floor.py [--epochs 30] [--repeats 5]

It times, on the bundled 1,000 training, 1,000 validation and 1,000 test images:
  1. forward + backward of 100 batch-10 steps with no dropout, no augmentation, no loss
     bookkeeping and no weight update (one graph while-loop): the convolutions' arithmetic;
  2. the same with dropout on (training=True) and the augmentation layers;
  3. the forward pass over the three whole splits that per-epoch metrics need (as `ml.train` measures);
  4. one epoch of mnistlab's engine (training + all metrics), for comparison.
Then it extrapolates each to `--epochs` epochs and counts the floating-point work.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np


def flops_per_image(model) -> tuple[int, int]:
    """Multiply-adds x 2 of one image's forward pass (convolutions and dense layers), and of forward + backward."""
    import keras

    forward = backward = 0
    first = True
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, out_channels = layer.output.shape[1:]
            kernel = int(np.prod(layer.kernel.shape[:-1]))
            work = 2 * height * width * out_channels * kernel
        elif isinstance(layer, keras.layers.Dense):
            work = 2 * int(np.prod(layer.kernel.shape))
        else:
            continue
        forward += work
        # Backward: the kernel's gradient always; the input's gradient except for the first layer.
        backward += work if first else 2 * work
        first = False
    return forward, forward + backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each piece (median reported)")
    args = parser.parse_args()

    import mnistlab as ml
    from mnistlab import bench
    import tensorflow as tf

    data = ml.load_course_data()
    config = dataclasses.replace(ml.Config(), model="cnn")
    ml.set_seed(config.seed)
    x_train = tf.constant(data.x_train.astype(np.float32))
    y_train = tf.constant(ml.one_hot(data.y_train))
    x_val = tf.constant(data.x_val.astype(np.float32))
    x_test = tf.constant(data.x_test.astype(np.float32))
    steps = len(data.x_train) // config.batch_size

    def steps_loop(model, training):
        weights = model.trainable_variables

        @tf.function(autograph=False)
        def run():
            def body(i, total):
                rows = tf.range(i * config.batch_size, (i + 1) * config.batch_size)
                with tf.GradientTape() as tape:
                    probabilities = model(tf.gather(x_train, rows), training=training)
                    loss = -tf.reduce_mean(tf.reduce_sum(tf.gather(y_train, rows) * tf.math.log(probabilities), 1))
                gradients = tape.gradient(loss, weights)
                return i + 1, total + tf.add_n([tf.reduce_sum(g) for g in gradients])
            return tf.while_loop(lambda i, total: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]
        return run

    bare = ml.build_cnn(data.x_train, 0.0, config.seed, augment=False)
    full = ml.build_cnn(data.x_train, 0.0, config.seed, augment=True)

    @tf.function(autograph=False)
    def whole_sets():
        return sum(tf.reduce_sum(full(x, training=False)) for x in (x_train, x_val, x_test))

    def median_seconds(function):
        function()  # trace and warm up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            np.asarray(function())
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    bare_steps, full_steps, metrics = ("forward + backward, no dropout or augmentation",
                                       "forward + backward with dropout and augmentation",
                                       "forward over the three whole splits (per-epoch metrics)")
    pieces = {bare_steps: median_seconds(steps_loop(bare, False)),
              full_steps: median_seconds(steps_loop(full, True)),
              metrics: median_seconds(whole_sets)}
    # An epoch of the engine: (1 + repeats) epochs minus 1 epoch, both after compiling once.
    one_epoch = dataclasses.replace(config, epochs=1)
    more_epochs = dataclasses.replace(config, epochs=1 + args.repeats)
    ml.train(one_epoch, data)
    start = time.perf_counter()
    ml.train(more_epochs, data)
    several = time.perf_counter() - start
    start = time.perf_counter()
    ml.train(one_epoch, data)
    one = time.perf_counter() - start
    pieces["mnistlab epoch (training + every metric)"] = (several - one) / args.repeats

    forward, forward_backward = flops_per_image(full)
    work = {bare_steps: forward_backward * len(data.x_train), full_steps: forward_backward * len(data.x_train),
            metrics: forward * (len(data.x_train) + len(data.x_val) + len(data.x_test))}
    print(f"| piece | s per epoch | x {args.epochs} epochs (s) | GFLOP per epoch | GFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in pieces.items():
        flops = work.get(name)
        extra = f"{flops / 1e9:.1f} | {flops / 1e9 / seconds:.0f}" if flops else "| "
        print(f"| {name} | {seconds:.4f} | {seconds * args.epochs:.1f} | {extra} |")
    floor = pieces[bare_steps] + pieces[metrics]
    print(f"\nArithmetic floor (no dropout, augmentation, optimizer, start-up): {floor * args.epochs:.1f} s "
          f"for {args.epochs} epochs.")
    info = bench.machine()
    print(f"{info['cores']} cores, {info['cpu']}, load {bench.load_average()}; TensorFlow {info['tensorflow']}, "
          f"Keras {info['keras']}; one-image forward {forward / 1e6:.1f} MFLOP, forward + backward "
          f"{forward_backward / 1e6:.1f} MFLOP.")


if __name__ == "__main__":
    main()
