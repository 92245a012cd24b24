"""Rate-distortion training of a registered model, one network for every quality level.

    loss = mean_i( lambda[q_i] * 255^2 * MSE_i + bpp_i ),   q_i ~ uniform over the model's quality levels
    bpp_i = -sum(log2 likelihoods of sample i) / pixels

Two optimizers, as in CompressAI: Adam on the main parameters, and Adam on the factorized prior's
``quantiles`` driven only by the model's ``aux_loss``.  Optimization is manual because Lightning 2 dropped
automatic optimization with several optimizers.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..models import build_model

AUX_SUFFIX = "quantiles"  # entropy-bottleneck parameters that only the aux loss may move


def rate_distortion(model: nn.Module, x: Tensor, quality: Tensor) -> dict[str, Tensor]:
    """Forward pass and per-sample terms: loss (scalar), bpp, mse, psnr (each (B,))."""
    out = model(x, quality)
    pixels = x.shape[-2] * x.shape[-1]
    bits = sum(-torch.log2(lk.float()).flatten(1).sum(1) for lk in out["likelihoods"].values())
    bpp = bits / pixels
    x_hat = out["x_hat"].float()
    # The loss sees the unclamped reconstruction (clamping would zero the gradient of overshooting pixels);
    # PSNR is reported on what a decoder would write out, the clamped one.
    mse = (x_hat - x).pow(2).flatten(1).mean(1)
    mse_out = (x_hat.clamp(0, 1) - x).pow(2).flatten(1).mean(1)
    lambdas = torch.as_tensor(model.config.lambdas, dtype=torch.float32, device=x.device)[quality]
    loss = (lambdas * 255**2 * mse + bpp).mean()
    psnr = -10 * torch.log10(mse_out.clamp_min(1e-10))
    return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr}


class RateDistortionModule(L.LightningModule):
    def __init__(self, model_name: str = "image", model_config: dict | None = None, lr: float = 1e-4,
                 aux_lr: float = 1e-3, clip: float = 1.0, milestones: list[int] | None = None,
                 gamma: float = 0.1, seed: int = 0, recipe: dict | None = None) -> None:
        super().__init__()
        # Everything needed to rebuild the model from a checkpoint alone (export reads these back).
        self.save_hyperparameters()
        self.model = build_model(model_name, model_config or {})
        self.automatic_optimization = False
        aux_names = [f"model.{n}" for n, _ in self.model.named_parameters() if n.endswith(AUX_SUFFIX)]
        if not aux_names:
            raise ValueError(f"model {model_name!r} has no '{AUX_SUFFIX}' parameters for the aux optimizer")
        # DDP must neither all-reduce nor expect gradients for the quantiles: the main loss never reaches
        # them, and the aux loss is computed outside DDP's forward.  They need no synchronisation anyway:
        # they start equal on every rank and their loss depends only on themselves and on detached prior
        # parameters, which DDP keeps identical, so every rank takes the same aux step.
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, aux_names)

    @property
    def num_qualities(self) -> int:
        return self.model.num_qualities

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(main, aux) parameters: disjoint and together all trainable parameters."""
        main, aux = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (aux if name.endswith(AUX_SUFFIX) else main).append(p)
        return main, aux

    def configure_optimizers(self):
        main, aux = self.parameter_groups()
        main_opt = torch.optim.Adam(main, lr=self.hparams.lr)
        aux_opt = torch.optim.Adam(aux, lr=self.hparams.aux_lr)
        if not self.hparams.milestones:
            return [main_opt, aux_opt]
        # Milestones count training steps; stepped by hand once per step (manual optimization).
        schedule = torch.optim.lr_scheduler.MultiStepLR(main_opt, list(self.hparams.milestones), self.hparams.gamma)
        return [main_opt, aux_opt], [schedule]

    def on_train_start(self) -> None:
        # Every rank was seeded alike (identical initial weights); give each rank, and each resumed run,
        # its own stream of random qualities and crops.
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_rank * 7919 + self.global_step)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        main_opt, aux_opt = self.optimizers()
        x = batch
        quality = torch.randint(0, self.num_qualities, (x.shape[0],), device=x.device)
        terms = rate_distortion(self.model, x, quality)

        lr = float(main_opt.param_groups[0]["lr"])  # the rate this step uses (the schedule moves it below)
        main_opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        if self.hparams.clip:
            self.clip_gradients(main_opt, gradient_clip_val=self.hparams.clip, gradient_clip_algorithm="norm")
        main_opt.step()  # counts as the trainer's global step

        # The aux step goes to the raw torch optimizer: through Lightning's wrapper it would count as a second
        # global step per batch, making max_steps and checkpoint intervals mean half what they say.
        aux_loss = self.model.aux_loss()
        aux_opt.optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.optimizer.step()

        schedule = self.lr_schedulers()
        if schedule is not None:
            schedule.step()

        batch_size = x.shape[0]
        self.log_dict({"train/loss": terms["loss"].detach(), "train/bpp": terms["bpp"].mean().detach(),
                       "train/psnr": terms["psnr"].mean().detach()}, prog_bar=True, batch_size=batch_size)
        self.log_dict({"train/mse": terms["mse"].mean().detach(), "train/aux_loss": aux_loss.detach(),
                       "train/lr": lr}, batch_size=batch_size)
        return terms["loss"].detach()

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """Estimated bpp and PSNR per quality level on the held-out crops (rounded latents, eval mode)."""
        x = batch
        losses = []
        for k in range(self.num_qualities):
            quality = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
            terms = rate_distortion(self.model, x, quality)
            losses.append(terms["loss"])
            self.log(f"val/psnr_q{k}", terms["psnr"].mean(), sync_dist=True, batch_size=x.shape[0])
            self.log(f"val/bpp_q{k}", terms["bpp"].mean(), sync_dist=True, batch_size=x.shape[0])
        self.log("val/loss", torch.stack(losses).mean(), sync_dist=True, batch_size=x.shape[0])
