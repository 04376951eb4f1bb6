"""The raw path: reading raw pairs, photon-transfer calibration of a camera's raw noise, its distribution, a
simulator of raw pairs with known noise (for testing the calibrator) and raw training pairs from clean photos."""
