"""BlackJAX-style MCMC over discrete sequences, and NumPyro kernels built on it.

``independence`` and ``cloze`` are called like BlackJAX samplers (``alg = independence(logdensity_fn,
proposal)``, ``alg.init(x)``, ``alg.step(key, state)``) and carry the module-level pieces as
attributes (``independence.init``, ``independence.build_kernel()``) for ``blackjax.tempered_smc``.
"""

from blackjax import GenerateSamplingAPI

from arjax.mcmc import cloze as _cloze
from arjax.mcmc import independence as _independence
from arjax.mcmc import numpyro
from arjax.mcmc.annealing import AnnealingResult, run_chains, simulated_annealing, tempered
from arjax.mcmc.cloze import ClozeInfo, ClozeState
from arjax.mcmc.independence import IndependenceInfo, IndependenceState, run_independence

__all__ = [
    "independence",
    "cloze",
    "IndependenceState",
    "IndependenceInfo",
    "ClozeState",
    "ClozeInfo",
    "tempered",
    "simulated_annealing",
    "AnnealingResult",
    "run_chains",
    "run_independence",
    "numpyro",
]

independence = GenerateSamplingAPI(_independence.as_top_level_api, _independence.init, _independence.build_kernel)
cloze = GenerateSamplingAPI(_cloze.as_top_level_api, _cloze.init, _cloze.build_kernel)
