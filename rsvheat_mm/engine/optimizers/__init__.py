from .layer_decay_constructor import (RSVHeatLayerDecayOptimWrapperConstructor,
                                      get_rsvheat_layer_id)

__all__ = ['RSVHeatLayerDecayOptimWrapperConstructor', 'get_rsvheat_layer_id']
