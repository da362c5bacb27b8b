"""da3_jax: Depth Anything 3 in JAX/Flax, built for scale-out training and fast inference."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.6",
    "flax>=0.10",
    "optax",
    "orbax-checkpoint",
    "grain",
    "tensorflow-datasets",
    "array-record",
    "einops",
    "numpy",
    "scipy",
    "ml-collections",
    "absl-py",
    "pillow",
    "safetensors",
    "opencv-python-headless",
    "imageio",
    "imageio-ffmpeg",
    "pycolmap",
    "trimesh",
    "plyfile",
    "h5py",
    "matplotlib",
    "tqdm",
    "tensorboardX",
    "importlib_resources",  # tfds without TensorFlow needs it
]

EXTRAS = {
    "dev": ["pytest", "pytest-xdist", "ruff"],
    # Parity tests and weight conversion. torch==2.13.0 resolves to the CPU wheel on the
    # project machines; the official package itself is installed with --no-deps (see Makefile).
    "torch": ["torch==2.13.0", "omegaconf", "addict"],
}

setup(
    name="da3_jax",
    version="0.1.0",
    description="Depth Anything 3 in JAX/Flax: training, scale-out and inference.",
    python_requires=">=3.10",
    packages=find_packages(include=["da3_jax*", "data_pipelines*", "experiments*", "benchmarks*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["da3-jax=da3_jax.infer.cli:main"]},
)
