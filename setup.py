"nbdev 2 style setup.py: every setting comes from settings.ini."
from configparser import ConfigParser
import glob, setuptools, shlex, sys

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, f"missing expected setting: {o}"
setup_cfg = {o: cfg[o] for o in cfg_keys}

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))

def native_kernels() -> dict:
    """Build folovllm/csrc into folovllm._C with torch's cpp_extension, at install (as vLLM builds its vllm._C, though
    it drives CMake), for the CPU it is installed on (-march=native: AVX2/FMA where there are). Without torch at build
    time (pip's build isolation: install with --no-build-isolation) or without a working C++ compiler, the install
    still succeeds, without the kernels; at run time folovllm says so once and uses torch's paths (notebook 02)."""
    try: from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as e:
        print(f'folovllm: torch is not importable while building ({e}); installing without the C++ kernels. '
              'Install torch first, then folovllm with --no-build-isolation.', file=sys.stderr)
        return {}

    class Build(BuildExtension):
        "torch's builder (ninja, in parallel), except that a kernel build that fails leaves the package installable."
        failed = ()
        def build_extension(self, ext):
            try: super().build_extension(ext)
            except Exception as e:
                self.failed = (*self.failed, ext.name)
                print(f'folovllm: the C++ kernels did not build ({e}); installing without them', file=sys.stderr)
        def copy_extensions_to_source(self):                  # editable installs: copy only what was built
            self.extensions = [e for e in self.extensions if e.name not in self.failed]
            super().copy_extensions_to_source()

    ext = CppExtension('folovllm._C', sorted(glob.glob('folovllm/csrc/*.cpp')),     # every kernel file → one module
                       extra_compile_args=['-O3', '-march=native', '-fopenmp', '-g0'], extra_link_args=['-fopenmp'])
    return dict(ext_modules=[ext], cmdclass={'build_ext': Build})

setuptools.setup(
    name=cfg['lib_name'],
    license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()] +
                [f'Programming Language :: Python :: {o}' for o in py_versions[py_versions.index(min_python):]] +
                (['License :: ' + lic[1]] if lic[1] else []),
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['folovllm', 'folovllm.*']),
    include_package_data=True,
    package_data={'folovllm': ['csrc/*.cpp']},          # the kernels' sources, which the notebooks show
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
    **native_kernels(),
    **setup_cfg)
