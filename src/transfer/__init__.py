"""transfer: learn low-light enhancement from lowsim data, fine-tune on real pairs.

Library entry points (the `transfer` command line is a thin layer over them):

- `transfer.models`: the networks, one module each, registered by name (`create_model("sid_unet", width=16,
  input_kind="srgb"|"raw")`, `list_models()`: sid_unet, plain_cnn, dense_cnn, estimate_enhance, vgg16_residual),
  their named blocks, `freeze_all_but_last(model, n)`, `count_parameters`; `@register` adds one.
- `transfer.train`: `run_training(TrainConfig(mode="pretrain"|"finetune"|"scratch", ...)) -> dict`.
- `transfer.evaluate`: `evaluate_checkpoint(checkpoint, pairs, ...) -> dict` (PSNR/SSIM per image and means).
- `transfer.infer`: `predict(model, image)` at any size (padded, tiled when large, clipped to [0, 1]).
- `transfer.enhance`: `enhance_files(checkpoint, images, out_dir, ratio=None)`.
- `transfer.checkpoint`: `load_checkpoint(path)` for run directories, checkpoint folders or .safetensors files.
- `transfer.experiment`: the founding paper's Table 1 and the model-zoo rows (`transfer experiment`).
"""
