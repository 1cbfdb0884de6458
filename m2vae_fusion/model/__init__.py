"""The fusion model at run time: the trained perception model, the object beliefs it keeps, the classifier on z."""
