import CParmlTypes
import ParmlData
import ParmlTensor

/// Splits an in-memory dataset into two new ones holding copies of its rows:
/// a training part in *train_out and a validation part of about
/// validation_fraction of the samples in *validation_out, each in the
/// dataset's order. The validation rows are round(n * validation_fraction)
/// (halves up) of each class's n rows when `stratified` is nonzero (so a
/// rare class is in both parts in its share; targets must be (N) class
/// indices), or of all
/// rows when it is 0, picked by a shuffle seeded by `seed` (the same split
/// for the same seed, on any machine). The caller owns both outputs
/// (parml_dataset_free); on failure both are untouched.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out-pointer,
/// validation_fraction outside (0, 1), a split that leaves a part empty,
/// stratified with targets that are not class indices, a token dataset),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_dataset_split)
public func parmlDatasetSplit(
    _ dataset: parml_dataset?, _ validation_fraction: Double, _ seed: UInt64, _ stratified: Int32,
    _ train_out: UnsafeMutablePointer<parml_dataset?>?, _ validation_out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_split") {
        let source = try datasetObject(dataset, inFitCallback: .allowed)
        let trainOut = try nonNull(train_out, "train_out"), validationOut = try nonNull(validation_out, "validation_out")
        guard let d = source as? Dataset else {
            throw ParmlError.invalidArgument("only a dataset of samples in memory splits; this one cuts windows of token ids")
        }
        let (train, validation) = try d.split(validationFraction: validation_fraction, seed: seed, stratified: stratified != 0)
        trainOut.pointee = HandleRegistry.shared.register(train, as: .dataset)
        validationOut.pointee = HandleRegistry.shared.register(validation, as: .dataset)
    }
}
