"""Test-set figures: `reconstruction` (MSE, PSNR), `likelihood` (IWAE bounds and exact
log-likelihoods), `outliers` (AUROC), `frechet` (Frechet distance of classifier logits) and
`vae_report` (every figure of `genkeras vae-evaluate`). Imports only `models` and `data`."""
