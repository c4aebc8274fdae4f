// SPDX-License-Identifier: MIT
/* placeholder: being written */
typedef int slimfs_placeholder_;
