"""Dataset preparation: raw layouts -> cropped sub-images -> LMDB. One module per dataset."""
