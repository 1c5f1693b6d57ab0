#!/usr/bin/env python3
"""TensorFlow twin of benchmarks/bench_train_step.cpp: the seed tutorial's own
CVAE and train step (Keras layers, tf.function, the tutorial's compute_loss and
Adam), timed the way bench_step_pytorch.py times PyTorch.

    pip install tensorflow-cpu
    python3 benchmarks/reference/bench_step_tf.py [--threads 2] [--steps 30] [--xla]
        [--shapes 100x50,32x2]

The model and loss are the tutorial's code ("Convolutional Variational
Autoencoder", tensorflow.org/tutorials/generative/cvae) with only the batch and
latent sizes as parameters; inputs are binary images of MNIST's density (about
13% ones). Prints ms per step (median of 5 repeats of --steps steps, after a
warm-up) for each shape.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up chatter off stdout

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class CVAE(tf.keras.Model):
    """The tutorial's convolutional variational autoencoder, verbatim."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = tf.keras.Sequential([
            tf.keras.layers.InputLayer(shape=(28, 28, 1)),
            tf.keras.layers.Conv2D(filters=32, kernel_size=3, strides=(2, 2), activation="relu"),
            tf.keras.layers.Conv2D(filters=64, kernel_size=3, strides=(2, 2), activation="relu"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(latent_dim + latent_dim),
        ])
        self.decoder = tf.keras.Sequential([
            tf.keras.layers.InputLayer(shape=(latent_dim,)),
            tf.keras.layers.Dense(units=7 * 7 * 32, activation=tf.nn.relu),
            tf.keras.layers.Reshape(target_shape=(7, 7, 32)),
            tf.keras.layers.Conv2DTranspose(filters=64, kernel_size=3, strides=2, padding="same",
                                            activation="relu"),
            tf.keras.layers.Conv2DTranspose(filters=32, kernel_size=3, strides=2, padding="same",
                                            activation="relu"),
            tf.keras.layers.Conv2DTranspose(filters=1, kernel_size=3, strides=1, padding="same"),
        ])

    def encode(self, x):
        mean, logvar = tf.split(self.encoder(x), num_or_size_splits=2, axis=1)
        return mean, logvar

    def reparameterize(self, mean, logvar):
        eps = tf.random.normal(shape=tf.shape(mean))
        return eps * tf.exp(logvar * .5) + mean

    def decode(self, z):
        return self.decoder(z)


def log_normal_pdf(sample, mean, logvar, raxis=1):
    log2pi = tf.math.log(2. * np.pi)
    return tf.reduce_sum(-.5 * ((sample - mean) ** 2. * tf.exp(-logvar) + logvar + log2pi), axis=raxis)


def compute_loss(model, x):
    mean, logvar = model.encode(x)
    z = model.reparameterize(mean, logvar)
    x_logit = model.decode(z)
    cross_ent = tf.nn.sigmoid_cross_entropy_with_logits(logits=x_logit, labels=x)
    logpx_z = -tf.reduce_sum(cross_ent, axis=[1, 2, 3])
    logpz = log_normal_pdf(z, 0., 0.)
    logqz_x = log_normal_pdf(z, mean, logvar)
    return -tf.reduce_mean(logpx_z + logpz - logqz_x)


def time_steps(batch, latent, steps, xla):
    tf.random.set_seed(0)
    model = CVAE(latent)
    optimizer = tf.keras.optimizers.Adam(1e-4)

    @tf.function(jit_compile=xla)
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = compute_loss(model, x)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    x = tf.constant((rng.random((batch, 28, 28, 1)) < 0.13).astype(np.float32))
    for _ in range(10):  # warm-up: tracing, oneDNN primitive caches
        train_step(x)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = train_step(x)
        loss.numpy()  # the steps ran eagerly in order; this waits for the last one
        runs.append((time.perf_counter() - t0) / steps)
    return statistics.median(runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--xla", action="store_true", help="tf.function(jit_compile=True)")
    ap.add_argument("--shapes", default="100x50,32x2", help="batch x latent, comma separated")
    a = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    mode = "tf.function+xla" if a.xla else "tf.function"
    print("tensorflow %s, %s, %d threads" % (tf.__version__, mode, a.threads))
    for shape in a.shapes.split(","):
        batch, latent = (int(v) for v in shape.split("x"))
        s = time_steps(batch, latent, a.steps, a.xla)
        print("tf_train_step %s batch %3d latent %2d: %8.3f ms/step  %9.0f images/s"
              % (mode, batch, latent, s * 1e3, batch / s))


if __name__ == "__main__":
    main()
