from .rsvheat import RSVHeat

__all__ = ['RSVHeat']
