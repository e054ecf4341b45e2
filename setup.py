"""Packaging glue that pyproject.toml cannot express alone.

The ``.avsc`` files stay in the top-level ``avro/`` folder (the single source of truth) and ship
inside the installed package as ``connector.schemas``, so a wheel or image carries exactly the
same files the repository reviews.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["connector", "connector.*"]), "connector.schemas"],
    package_dir={"connector.schemas": "avro"},
)
