"""This process's data-parallel rank and world size.

Precedence: a value given in the LoaderConfig; else an initialised torch.distributed group (its
get_rank() / get_world_size()); else torchrun's environment (RANK, WORLD_SIZE; LOCAL_RANK is
checked), read by the C++ core (include/groupmates/rank_environment.h); else rank 0 of 1. A given
value that disagrees with the group or the environment raises ConfigError naming the field, unless
check_rank_environment=False (a loader that every rank reads whole, e.g. evaluation data)."""
import dataclasses

import torch

from . import _core
from .config import LoaderConfig
from .errors import config_error


def distributed_group():
    """(rank, world_size) of the initialised default torch.distributed group, or None."""
    dist = torch.distributed
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist.get_rank(), dist.get_world_size()


def resolve_ranks(config: LoaderConfig) -> LoaderConfig:
    """`config` with rank and world_size set by the precedence above."""
    if config.check_rank_environment:
        group = distributed_group()
        if group is not None:
            for name, given, actual in (("rank", config.rank, group[0]), ("world_size", config.world_size, group[1])):
                if given is not None and given != actual:
                    raise config_error(f"LoaderConfig.{name}",
                                       f"is {given} but the initialised torch.distributed group says {name}={actual}: "
                                       f"ranks would read the wrong rows of the stream; leave {name} unset (None) to "
                                       "take it from the group, or set check_rank_environment=False for a loader that "
                                       "is not split across the ranks (e.g. evaluation data every rank reads whole)")
            return dataclasses.replace(config, rank=group[0], world_size=group[1])
    rank, world_size = _core.resolve_ranks(config.to_core())
    return dataclasses.replace(config, rank=rank, world_size=world_size)
