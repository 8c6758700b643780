"""llvmlite plumbing: one MCJIT engine per JIT, IR -> object code -> callable.

Facts from JIT_NOTES.md that shape this module:
  * llvm.initialize() raises in llvmlite 0.50: initialise the native target,
    asm printer and asm parser only (trap 2);
  * a pass manager from PassBuilder.getModulePassManager() aborts on its
    second run: we build a fresh one per module (trap 1);
  * MCJIT keeps each IR module (40 KiB): modules are removed once their
    functions' addresses are taken (trap 5);
  * MCJIT returns an address even for an undefined external (trap 4): the
    IR we emit calls only the helpers declared in ``HELPERS``, which are all
    registered with llvm.add_symbol before any compile.
Compiled code is produced as an object file (``compile_object``) and loaded
with ``add_object_file`` in both the fresh and the cached case, so a cache
hit and a fresh compile take exactly the same path into the engine.
"""
import ctypes

import llvmlite.binding as llvm

_initialised = False

# helper name -> ctypes prototype; the callbacks themselves live in jit.py
HELPER_PROTOS = {
    # i64 emu_rd(ctx, sreg, offset, size, ahead): value, or < 0 = exit
    "emu_rd": ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int32,
                               ctypes.c_uint32, ctypes.c_int32, ctypes.c_int32),
    # i32 emu_wr(ctx, sreg, offset, size, value, ahead): 0 ok, 1 ok + stop after, < 0 fault
    "emu_wr": ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int32,
                               ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint32, ctypes.c_int32),
    # i32 emu_op(ctx, eip, ahead): run the interpreter's closure of the
    # instruction at eip (0 go on, 1 stop after it, 2 interpret it, < 0 fault)
    "emu_op": ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_uint32, ctypes.c_int32),
}
HELPER_DECLS = (
    "declare i64 @emu_rd(i64, i32, i32, i32, i32)\n"
    "declare i32 @emu_wr(i64, i32, i32, i32, i32, i32)\n"
    "declare i32 @emu_op(i64, i32, i32)\n"
)
BLOCK_PROTO = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)
RUNTIME_NAMES = frozenset()     # set by set_runtime(): routines every engine holds
_runtime_text = None
_runtime_objs = {}              # code model -> the runtime object compiled for it

# Code models.  Blocks are compiled for the small model (32-bit PC-relative
# references to data, GOT entries and call stubs), which compiles 25-40%
# faster than the large one.  But MCJIT's memory manager maps an object's
# code and data from separate pools, and in a process that has made many
# engines (the test suite, a fuzzer running VM after VM) the pools of a new
# engine can land more than 2 GiB apart: RuntimeDyldELF then aborts the
# process on such a relocation (assertion isInt<32>(RealOffset); the CPU
# tests under the JIT hit it in one test order).  So an engine made after
# the first SMALL_MODEL_ENGINES gets large-model code (64-bit absolute
# addresses everywhere, LLVM's own default for JIT code), and the code
# cache keeps the two apart (jit.py).  `emu run` makes one engine.
SMALL_MODEL_ENGINES = 16
_engines_made = 0
_tms = {}                       # (optimise, code model) -> target machine


def set_runtime(names, text):
    """The runtime module (ir.runtime_module_text): compiled once per process,
    loaded into every engine before any block."""
    global RUNTIME_NAMES, _runtime_text
    RUNTIME_NAMES = frozenset(names)
    _runtime_text = text


def initialise():
    """Make LLVM ready for native code generation (once per process).

    Two code generators (``_target_machine_for``).  Most blocks run a few
    times between exits: codegen opt 0 (fast instruction selection and
    register allocation) compiles them in about a millisecond.  A block that
    loops on itself is where a guest spends its time: it gets
    instcombine/simplifycfg and codegen opt 2 (greedy register allocation
    keeps the loop in registers), ~5 ms."""
    global _initialised
    if _initialised:
        return
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    _initialised = True


_registered = {}


def register_helpers(callbacks):
    """Make the helper symbols resolvable (process-wide; the callbacks
    dispatch on the context address, so one set serves every JIT)."""
    for name, cb in callbacks.items():
        if name not in HELPER_PROTOS:
            raise ValueError("unknown helper %s" % name)
        addr = ctypes.cast(cb, ctypes.c_void_p).value
        _registered[name] = cb             # keep the ctypes thunk alive
        llvm.add_symbol(name, addr)


def _target_machine_for(optimise, model):
    key = (bool(optimise), model)
    tm = _tms.get(key)
    if tm is None:
        tm = _tms[key] = llvm.Target.from_default_triple().create_target_machine(
            opt=2 if optimise else 0, reloc="pic" if model == "small" else "static",
            codemodel=model)
    return tm


def compile_object(ir_text, optimise=False, model="small"):
    """IR text -> relocatable object bytes: SROA (allocas -> SSA registers),
    then codegen; with ``optimise``, instcombine + simplifycfg and codegen
    opt 2."""
    initialise()
    tm = _target_machine_for(optimise, model)
    mod = llvm.parse_assembly(ir_text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    for f in mod.functions:
        if f.is_declaration and f.name not in HELPER_PROTOS and not f.name.startswith("llvm.") \
                and f.name not in RUNTIME_NAMES:
            raise ValueError("IR calls undefined function %s" % f.name)
    pto = llvm.create_pipeline_tuning_options(speed_level=0)
    pb = llvm.create_pass_builder(tm, pto)
    if optimise:
        mpm = llvm.create_new_module_pass_manager()
        mpm.add_always_inliner_pass()
        mpm.run(mod, pb)
    fpm = llvm.create_new_function_pass_manager()
    fpm.add_sroa_pass()
    if optimise:
        fpm.add_instruction_combine_pass()
        fpm.add_simplify_cfg_pass()
    for f in mod.functions:
        if not f.is_declaration:
            fpm.run(f, pb)
    return tm.emit_object(mod)


class Engine:
    """An MCJIT execution engine holding the objects of one JIT."""

    def __init__(self, model=None):
        global _engines_made
        initialise()
        if model is None:
            model = "small" if _engines_made < SMALL_MODEL_ENGINES else "large"
        _engines_made += 1
        self.model = model          # the code model of every object loaded here
        # MCJIT takes ownership of the target machine it is given (llvmlite
        # marks it owned): each engine gets its own, never the compilers' ones,
        # or a second engine (or a compile after an engine is gone) crashes
        tm = llvm.Target.from_default_triple().create_target_machine(
            opt=0, reloc="pic" if model == "small" else "static", codemodel=model)
        self._empty = llvm.parse_assembly("")
        self.ee = llvm.create_mcjit_compiler(self._empty, tm)
        if _runtime_text is not None:
            obj = _runtime_objs.get(model)
            if obj is None:
                obj = _runtime_objs[model] = compile_object(_runtime_text, optimise=True,
                                                            model=model)
            self.ee.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self.ee.finalize_object()

    def load(self, obj, names):
        """Add an object file; return {name: address} for the given symbols."""
        self.ee.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.ee.finalize_object()
        out = {}
        for n in names:
            a = self.ee.get_global_value_address(n) if n[:2] in ("s_", "p_", "h_") \
                else self.ee.get_function_address(n)
            if not a:
                raise RuntimeError("symbol %s missing from compiled object" % n)
            out[n] = a
        return out
