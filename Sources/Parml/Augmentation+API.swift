import CParmlTypes
import ParmlData
import ParmlTensor

// Augmentation of a dataset's images in parml_trainer_fit (ParmlData/Augmentation.swift).

/// The engine's default augmentation (none) as the C struct.
func defaultAugmentParams() -> parml_augment_params {
    let a = Augmentation.none
    var p = parml_augment_params()
    p.struct_size = MemoryLayout<parml_augment_params>.size
    p.crop_padding = Int32(a.cropPadding)
    p.horizontal_flip = a.horizontalFlip ? 1 : 0
    return p
}

/// Fills *params with no augmentation (crop_padding 0, horizontal_flip 0)
/// and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_augment_params_init)
public func parmlAugmentParamsInit(_ params: UnsafeMutablePointer<parml_augment_params>?) -> parml_status {
    guarded("parml_augment_params_init") { try nonNull(params, "params").pointee = defaultAugmentParams() }
}

/// Sets how parml_trainer_fit transforms this dataset's images when it forms
/// training batches: a random crop of the image padded with
/// params->crop_padding zeros on each side, then a horizontal flip with
/// probability 1/2 when params->horizontal_flip is 1. Sample s of epoch e
/// draws its offsets and flip from (the trainer's strategy seed, e, s), so
/// every layout (dp, pp, tp, MPI processes) and a resumed run train on the
/// same images. parml_trainer_evaluate, fit's validation and
/// parml_trainer_step never transform anything. NULL params (or all
/// fields 0) turns augmentation off. The setting stays with the dataset.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, a token dataset, small
/// struct_size, crop_padding negative or not below the images' height and
/// width, horizontal_flip not 0 or 1), PARML_ERR_SHAPE (samples that are
/// not (C, H, W) or (H, W)); the dataset keeps its setting on failure.
/// Since: 0.3.
@c(parml_dataset_set_augmentation)
public func parmlDatasetSetAugmentation(_ dataset: parml_dataset?, _ params: UnsafePointer<parml_augment_params>?) -> parml_status {
    guarded("parml_dataset_set_augmentation") {
        let source = try datasetObject(dataset)
        guard let d = source as? Dataset else {
            throw ParmlError.invalidArgument("augmentation transforms images; this dataset cuts token windows")
        }
        let p = try params.map {
            try readSized($0, defaults: defaultAugmentParams(), name: "params", minimum: MemoryLayout<parml_augment_params>.size)
        } ?? defaultAugmentParams()
        guard p.horizontal_flip == 0 || p.horizontal_flip == 1 else {
            throw ParmlError.invalidArgument("params->horizontal_flip must be 0 or 1, got \(p.horizontal_flip)")
        }
        try d.setAugmentation(try Augmentation(cropPadding: Int(p.crop_padding), horizontalFlip: p.horizontal_flip == 1))
    }
}
