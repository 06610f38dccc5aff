"""ftlab: fine-tuning strategies for pretrained image models in JAX/Flax."""
import pathlib

from setuptools import find_packages, setup

here = pathlib.Path(__file__).parent
requirements = [
    line.strip() for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="ftlab",
    version="0.1.0",
    description="Compare fine-tuning strategies for pretrained image models in JAX/Flax.",
    packages=find_packages(include=["ftlab", "ftlab.*", "configs"]),
    package_data={"ftlab": ["data/*.txt", "pretrained/*.txt", "pretrained/*.json",
                            "ops/*.cc"]},
    python_requires=">=3.10",
    install_requires=requirements,
)
