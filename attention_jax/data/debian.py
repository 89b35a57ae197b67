"""Fetching pinned Debian packages without installing them: `apt-get download` + `dpkg-deb -x`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess


def download_packages(directory: str, packages: dict[str, str], purpose: str = 'this dataset') -> list[str]:
  """Downloads each package=version into `directory` and unpacks it into directory/<package>/ (once).

  Args:
    directory: where the .deb files and the unpacked trees go.
    packages: {package name: pinned Debian version}.
    purpose: what the packages are for, used in error messages.

  Returns:
    The unpacked roots, one per package, in the order given.

  Raises:
    RuntimeError: apt-get/dpkg-deb missing (the message says what to install by hand) or a download failed.
  """
  if shutil.which('apt-get') is None or shutil.which('dpkg-deb') is None:
    raise RuntimeError(f'apt-get and dpkg-deb are needed to fetch {purpose} (Debian/Ubuntu). On other systems, '
                       f'download these Debian packages and unpack each with `dpkg-deb -x PKG.deb '
                       f'{directory}/<package>` (or any .deb extractor): '
                       + ', '.join(f'{p}={v}' for p, v in packages.items()))
  os.makedirs(directory, exist_ok=True)
  roots = []
  for package, version in packages.items():
    root = os.path.join(directory, package)
    if not os.path.isdir(root):
      debs = glob.glob(os.path.join(directory, f'{package}_*.deb'))
      if not debs:
        result = subprocess.run(['apt-get', 'download', f'{package}={version}'], cwd=directory,
                                capture_output=True, text=True)
        debs = glob.glob(os.path.join(directory, f'{package}_*.deb'))
        if result.returncode or not debs:
          raise RuntimeError(f'apt-get download {package}={version} failed:\n{result.stderr[-1500:]}\n'
                             'Run `apt-get update` first, or check that the pinned version is still available '
                             f'(`apt-cache policy {package}`).')
      # Unpack into a temporary directory first so an interrupted run is redone, not half-used.
      subprocess.run(['dpkg-deb', '-x', debs[0], root + '.tmp'], check=True)
      os.replace(root + '.tmp', root)
    roots.append(root)
  return roots
