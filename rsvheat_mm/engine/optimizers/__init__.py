from .layer_decay_constructor import RSVHeatLayerDecayOptimWrapperConstructor

__all__ = ['RSVHeatLayerDecayOptimWrapperConstructor']
