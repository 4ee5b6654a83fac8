"""Models by name, layer lookup, checkpoints and cost measurement."""
from .checkpoint import (load_checkpoint, load_state_into, model_structure, register_module_type,
                         save_checkpoint)
from .cost import ModelCost, count_macs_params, measure_latency, model_cost, serialized_size
from .groups import (DomainHeads, GroupBatchNorm2d, GroupInputError, GroupOffsetLinear, feed_groups, final_linear_name,
                     replace_module, takes_group)
from .zoo import (DEFAULT_IMAGE_SIZE, MODEL_NAMES, ModelError, build_model, conv_layer_names, example_input,
                  get_module, input_size, last_conv_name)
from .multi_exit import ExitHeads, attach_exits, early_exit, exit_heads
from .weights import WeightsError, head_name, load_pretrained, read_state_dict

__all__ = [
    "DomainHeads", "GroupBatchNorm2d", "GroupInputError", "GroupOffsetLinear", "feed_groups", "final_linear_name", "replace_module",
    "takes_group",
    "DEFAULT_IMAGE_SIZE", "MODEL_NAMES", "ModelCost", "ModelError", "build_model", "conv_layer_names",
    "count_macs_params",
    "example_input", "get_module", "input_size", "last_conv_name", "load_checkpoint", "load_state_into",
    "measure_latency", "model_cost", "model_structure", "register_module_type", "save_checkpoint",
    "serialized_size", "ExitHeads", "attach_exits", "early_exit", "exit_heads", "WeightsError", "head_name", "load_pretrained", "read_state_dict",
]
