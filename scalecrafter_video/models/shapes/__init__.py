"""The shipped shapes models: a class-conditional 32x32 pixel-space UNet (circle, square,
triangle) and its motion adapter (8-frame clips), their data generator, loaders, `ShapesPipeline`,
the shape metrics that score their samples, and the weights under `assets/`."""
