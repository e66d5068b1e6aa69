"""Image pool: a history of generated images shown to the discriminator (pix2pix/CycleGAN).

With probability 1/2 an incoming image is swapped for a stored one, so the
discriminator also sees older generator outputs. Its contents and its random
draws are part of the resume state, so a resumed run continues identically.
"""

from __future__ import annotations

import torch


class ImagePool:
    """A fixed-size buffer of past generated images.

    Args:
        size: number of images kept; 0 disables the pool (``query`` returns its input).
        seed: seed of the pool's own random generator (independent of torch's global RNG).
    """

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape: each image is the new one or a stored one."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            if torch.rand((), generator=self.generator).item() < 0.5:
                idx = int(torch.randint(0, self.size, (), generator=self.generator).item())
                old = self.images[idx].clone()
                self.images[idx] = image.clone()
                out.append(old.to(image.device))
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {
            "images": [img.cpu() for img in self.images],
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.images = [img.to(device) for img in state["images"]]
        self.generator.set_state(state["rng"])
