# librbd and librados (librbd-dev, librados-dev) have no pkg-config files.
PLUGIN_PKGS_rbd :=
PLUGIN_LIBS_rbd := -lrbd -lrados
