from setuptools import find_packages, setup

setup(
    name="brl_graph",
    version="0.1.0",
    description="Graph transformers with Bottleneck Regularized Linear (BRL) attention on PyTorch Geometric",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["brl_graph", "brl_graph.*"]),
    install_requires=[
        # A closed range: an open one lets pip pull a multi-GB CUDA build.
        "torch>=2.4,<2.15",
        "torch-geometric>=2.6",
        "ogb>=1.3.6",
        "networkx>=3.0",
        "numpy>=1.24",
        "scipy>=1.10",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        # Imported by brl_graph.data: metrics (AUROC, AP) and the CSV readers.
        "scikit-learn>=1.2",
        "pandas>=1.5",
    ],
    extras_require={
        "test": ["pytest>=7.0", "rdkit>=2023.3"],
        "scatter": ["torch-scatter>=2.1"],
        "chem": ["rdkit>=2023.3"],
    },
)
