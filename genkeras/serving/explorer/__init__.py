"""The latent explorer: a web page served by `genkeras serve` next to TF Serving's REST API.

`routes` answers the page's URLs (`/`, `/static/FILE` from `static/`, and
`/explorer/models.json`); `data` builds `static/explorer_data.json`, the MNIST test digits
and log-likelihood histograms the page bundles. The page itself only calls the REST API.
"""
