"""Where training runs: the Keras backend's set-up and the device's name.

Imported before anything else touches Keras (``engine.training.trainer`` and ``engine.training.batches``
import it first): it quiets TensorFlow's C++ start-up chatter and keeps JAX from grabbing
75 % of the GPU up front (its analogue of memory growth), then sets TensorFlow's GPUs to
grow their memory and applies the thread-pool sizes the environment asks for.

>>> from engine.training.device import device_name
>>> device_name().startswith(("CPU (", "GPU ("))
True
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import keras  # noqa: E402

log = logging.getLogger(__name__)


def _configure_backend() -> None:
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as e:  # the runtime was already initialised by someone else
        log.warning("could not turn on GPU memory growth: %s", e)
    # TensorFlow's defaults (0 = "one thread per core" for both pools) measured as good as
    # any explicit setting on 2 cores (bench/trainer.py: 0/0 best, 2/2 about the same,
    # 2 intra + 1 inter ~20 % slower, 1/1 ~35 % slower); explicit values only when the
    # environment asks (SPROUT_INTRA_OP_THREADS, SPROUT_INTER_OP_THREADS).
    try:
        intra = os.environ.get("SPROUT_INTRA_OP_THREADS")
        inter = os.environ.get("SPROUT_INTER_OP_THREADS")
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra))
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter))
    except RuntimeError as e:
        log.warning("could not set TensorFlow's thread pools: %s", e)


_configure_backend()


def cpu_count() -> int:
    """The CPU cores this process may run on (its affinity, where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_name() -> str:
    """Where training runs, in words: ``"GPU (NVIDIA H200)"`` or ``"CPU (2 cores)"``."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
                return f"GPU ({name})" + (f" x{len(gpus)}" if len(gpus) > 1 else "")
        elif backend == "jax":
            import jax

            devices = jax.devices()
            if devices and devices[0].platform == "gpu":
                return f"GPU ({devices[0].device_kind})" + (f" x{len(devices)}" if len(devices) > 1 else "")
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU ({torch.cuda.get_device_name(0)})"
    except Exception as e:  # noqa: BLE001 - a broken driver must not break the caller
        log.warning("could not query the GPU: %s", e)
    return f"CPU ({cpu_count()} cores)"
