"""The SimPy capacity model of the mini-broker, its calibration and its validation.

Start with :mod:`sim.model` (``Config``, ``simulate``, ``Result``) and
:mod:`sim.costs` (``Costs``, ``Calibration``); :mod:`sim.capacity` finds capacity knees;
``minibroker sim`` (:mod:`sim.cli`) is the command line. No Kafka import anywhere here
except in the validation.
"""
