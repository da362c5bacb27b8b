"""da3_jax: Depth Anything 3 in JAX/Flax (linen).

Subpackages: ``geometry`` (pure camera / ray / alignment math), ``model`` (Flax modules),
``parallel`` (mesh, sharding rules, attention kernels), ``train``, ``eval``, ``infer``,
``convert`` (official checkpoint loading).
"""

__version__ = "0.1.0"
