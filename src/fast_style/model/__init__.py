"""The networks: the transformer net (plain layers), its CPU fast paths, the perceptual loss and its VGG."""
