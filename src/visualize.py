"""Pictures of a trained DDGAN: python -m src.visualize ckpt_path=... output_dir=D [seed=S ...].

Writes D/chain.png, D/chain.gif and D/interpolation.png (see src.ddgan.visualization); class_label=c: a
class-conditional model's pictures of class c (default: row i of class i mod num_classes).
"""
import hydra
from omegaconf import DictConfig

from src.ddgan.checkpoint import load_ddgan
from src.ddgan.cli import fail, pick_device
from src.ddgan.visualization import mixture_centers, visualize


@hydra.main(version_base="1.3", config_path="../conf", config_name="visualize")
def main(cfg: DictConfig) -> None:
    try:
        model = load_ddgan(cfg.ckpt_path).to(pick_device(cfg.device))
        if cfg.class_label is not None:
            model.check_class_label(cfg.class_label)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    files = visualize(model, cfg.output_dir, num_samples=cfg.num_samples, num_rows=cfg.num_rows, num_steps=cfg.num_steps,
                      seed=cfg.seed, shared_z=cfg.shared_z, gif=cfg.gif, centers=mixture_centers(model.hparams["config"]),
                      class_label=cfg.class_label)
    print("wrote " + ", ".join(str(path) for path in files.values()))


if __name__ == "__main__":
    main()
