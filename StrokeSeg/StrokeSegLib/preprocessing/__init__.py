"""From two files to the network's input: settings, input checks, ADC alignment, brain mask, intensity normalisation,
network grid and its exact inverse. May import common and io."""
