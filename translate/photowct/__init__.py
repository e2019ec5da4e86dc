"""Photorealistic style transfer (PhotoWCT, Li et al. ECCV 2018; NVIDIA/FastPhotoStyle) in JAX.

  translate.networks.photowct   VGG encoders and max-unpooling decoders (converter arch `photo_wct`)
  translate.photowct.wct        whitening and colouring transform, global or per segmentation label
  translate.photowct.smoothing  closed-form matting-affinity smoothing (scipy, exact; JAX CG) and the
                                fast guided-filter smoothing (JAX)
  translate.photowct.pipeline   the coarse-to-fine cascade relu4_1 -> relu1_1 and model loading
  translate.methods.photowct    decoder training on the method contract
  translate.stylize             the command line
"""
