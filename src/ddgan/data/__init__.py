"""Datamodules and datasets. Every train loader yields (images (N, C, H, W) float32 in [-1, 1], labels long).

cifar10.CIFAR10DataModule, stl10.STL10DataModule, stacked.StackedMNISTDataModule, stacked.StackedDigitsDataModule,
stacked.DigitsDataModule, folder_or_lmdb.FolderOrLMDBDataModule (CelebA-HQ 256, LSUN Church 256),
image_folder.ImageFolderDataModule, gaussians.GaussianMixtureDataModule; with data.conditional=true the labels are a
class-conditional model's classes;
shared plumbing in datamodule.py; user-fixable problems raise errors.DataError (one line, with the fix).
Modules are imported directly (nothing here), so light users such as the prepare command skip torch/lightning.
"""
