"""Vanilla (unconditional) GAN (Goodfellow et al. 2014) on the embedded MNIST digits.

The conditional GAN of `translate.methods.cgan` without y: its functions look at `config.method`, so
this method is built from them. Samples are a 10 x N grid of independent draws; there is no class to
check, so no class_acc.
"""
from translate.methods import cgan

METHOD = cgan.make_method("gan")
