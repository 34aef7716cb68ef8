"""Datamodules and datasets. Every train loader yields (images (N, C, H, W) float32 in [-1, 1], labels long).

cifar10.CIFAR10DataModule, stacked.StackedMNISTDataModule, stacked.StackedDigitsDataModule,
folder_or_lmdb.CelebAHQ256DataModule, folder_or_lmdb.LSUNChurch256DataModule, image_folder.ImageFolderDataModule;
shared plumbing in datamodule.py; user-fixable problems raise errors.DataError (one line, with the fix).
Modules are imported directly (nothing here), so light users such as the prepare command skip torch/lightning.
"""
