"""ONNX import: the real models shipped with onnx, a helper-built transformer, training, bad files, fuzzing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from core.errors import InputError
from core.graph import Graph, graph_from_dict, graph_to_dict
from core.sources.onnx_import import import_onnx

LIGHT = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(LIGHT.glob("*.onnx"))
RESNET = LIGHT / "light_resnet50.onnx"


def roundtrip(g: Graph) -> None:
    again = graph_from_dict(graph_to_dict(g))
    assert again.tensors == g.tensors and again.ops == g.ops


def transformer_model(d: int = 64, ff: int = 256, layers: int = 2, custom_op: bool = False) -> onnx.ModelProto:
    """A small pre-norm transformer built with onnx.helper (symbolic batch and sequence dims)."""
    nodes, inits = [], []

    def w(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name))
        return name

    x = "x"
    for i in range(layers):
        p = f"l{i}"
        nodes.append(helper.make_node("LayerNormalization", [x, w(f"{p}.ln1.s", d), w(f"{p}.ln1.b", d)], [f"{p}.h"],
                                      axis=-1, name=f"{p}.ln1"))
        for proj in ("q", "k", "v"):
            nodes.append(helper.make_node("MatMul", [f"{p}.h", w(f"{p}.w{proj}", d, d)], [f"{p}.{proj}"],
                                          name=f"{p}.{proj}_proj"))
        nodes.append(helper.make_node("Transpose", [f"{p}.k"], [f"{p}.kt"], perm=[0, 2, 1], name=f"{p}.kt"))
        nodes.append(helper.make_node("MatMul", [f"{p}.q", f"{p}.kt"], [f"{p}.s"], name=f"{p}.scores"))
        nodes.append(helper.make_node("Softmax", [f"{p}.s"], [f"{p}.a"], axis=-1, name=f"{p}.softmax"))
        nodes.append(helper.make_node("MatMul", [f"{p}.a", f"{p}.v"], [f"{p}.c"], name=f"{p}.context"))
        nodes.append(helper.make_node("MatMul", [f"{p}.c", w(f"{p}.wo", d, d)], [f"{p}.o"], name=f"{p}.o_proj"))
        nodes.append(helper.make_node("Add", [x, f"{p}.o"], [f"{p}.r1"], name=f"{p}.res1"))
        nodes.append(helper.make_node("MatMul", [f"{p}.r1", w(f"{p}.w1", d, ff)], [f"{p}.f1"], name=f"{p}.ff1"))
        act = "Relu"
        nodes.append(helper.make_node(act, [f"{p}.f1"], [f"{p}.g"], name=f"{p}.act"))
        if custom_op:
            nodes.append(helper.make_node("FancyOp", [f"{p}.g"], [f"{p}.g2"], domain="com.example", name=f"{p}.fancy"))
            g_out = f"{p}.g2"
        else:
            g_out = f"{p}.g"
        nodes.append(helper.make_node("MatMul", [g_out, w(f"{p}.w2", ff, d)], [f"{p}.f2"], name=f"{p}.ff2"))
        nodes.append(helper.make_node("Add", [f"{p}.r1", f"{p}.f2"], [f"{p}.out"], name=f"{p}.res2"))
        x = f"{p}.out"
    graph = helper.make_graph(
        nodes, "tiny-transformer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "seq", d])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.example", 1)] if custom_op else [])
    return helper.make_model(graph, opset_imports=opsets, producer_name="tierplan-tests")


class TestShippedModels:
    def test_all_found(self) -> None:
        assert len(LIGHT_MODELS) >= 9

    @pytest.mark.parametrize("path", LIGHT_MODELS, ids=lambda p: p.stem)
    @pytest.mark.parametrize("train", [False, True])
    def test_imports(self, path: Path, train: bool) -> None:
        g = import_onnx(path, train=train, batch=4)
        roundtrip(g)
        assert g.meta["params_total"] > 10**5
        assert sum(op.flops for op in g.ops) > 0
        by = g.total_bytes_by_kind
        assert by["weight"] > 0 and by["activation"] > 0
        if train:
            assert by["gradient"] == by["weight"] - _non_trainable_bytes(g)
            assert any(op.phase == "backward" for op in g.ops)
            assert all(op.host_ok for op in g.ops if op.phase == "optimizer")

    def test_resnet50_params_and_flops(self) -> None:
        g = import_onnx(RESNET)
        assert g.meta["params_total"] == 25_557_032  # torchvision/caffe2 ResNet-50
        convs = [op for op in g.ops if op.category == "conv"]
        assert len(convs) == 53
        gmacs = sum(op.flops for op in g.ops if op.category in ("conv", "matmul")) / 2e9
        assert 3.8 < gmacs < 4.2  # the published ~4.1 GMACs per 224x224 image
        assert g.meta["workload"] == {"kind": "inference", "batch": 1}
        assert not g.meta["warnings"]

    def test_batch_scales_activations_not_weights(self) -> None:
        one, many = import_onnx(RESNET), import_onnx(RESNET, batch=32)
        assert many.total_bytes_by_kind["weight"] == one.total_bytes_by_kind["weight"]
        assert many.total_bytes_by_kind["activation"] == pytest.approx(32 * one.total_bytes_by_kind["activation"], rel=1e-6)
        assert sum(op.flops for op in many.ops) == pytest.approx(32 * sum(op.flops for op in one.ops))

    def test_training_adam_state_fp32(self) -> None:
        g = import_onnx(RESNET, train=True)
        by = g.total_bytes_by_kind
        trainable = by["weight"] - _non_trainable_bytes(g)
        assert by["optimizer_state"] == 2 * trainable  # fp32 weights: m + v
        assert g.ops[-1].phase == "optimizer"
        # A backward costs one forward per gradient it computes: weight and input gradient for every conv
        # but the first, whose input (the image) needs none (issue 13).
        fwd = {op.id: op for op in g.ops if op.phase == "forward"}
        first_conv = next(op for op in g.ops if op.category == "conv")
        assert g.ops[g.op_index[f"{first_conv.id}.bwd"]].flops == pytest.approx(first_conv.flops)
        second_conv = [op for op in g.ops if op.category == "conv"][1]
        assert g.ops[g.op_index[f"{second_conv.id}.bwd"]].flops == pytest.approx(2 * second_conv.flops)
        assert sum(op.flops for op in g.ops if op.phase == "backward") == pytest.approx(
            2 * sum(op.flops for op in fwd.values() if op.id != "loss") - first_conv.flops, rel=0.01)

    def test_bytes_input_equals_path_input(self) -> None:
        a = import_onnx(RESNET.read_bytes(), source="resnet.onnx")
        b = import_onnx(RESNET)
        assert a.tensors == b.tensors and a.ops == b.ops


def _non_trainable_bytes(g: Graph) -> int:
    """BatchNorm running statistics: weights the optimizer does not update."""
    updated = {t for op in g.ops if op.phase == "optimizer" for t in op.mutates}
    return sum(t.bytes for t in g.tensors if t.kind == "weight" and t.id not in updated)


class TestHelperTransformer:
    def test_shapes_and_flops(self) -> None:
        g = import_onnx(transformer_model().SerializeToString(), dims={"seq": 128}, batch=8)
        d, ff, s, b = 64, 256, 128, 8
        assert g.meta["params_total"] == 2 * (4 * d * d + 2 * d * ff + 2 * d)
        ff1 = g.ops[g.op_index["l0.ff1"]]
        assert ff1.flops == pytest.approx(2 * b * s * d * ff)
        scores = g.ops[g.op_index["l0.scores"]]
        assert scores.flops == pytest.approx(2 * b * s * s * d)
        assert g.tensor_by_id["l0.s"].bytes == b * s * s * 4
        assert scores.category == "matmul" and g.ops[g.op_index["l0.ln1"]].category == "norm"
        roundtrip(g)

    def test_symbolic_seq_warns(self) -> None:
        g = import_onnx(transformer_model().SerializeToString())
        assert any("seq" in w for w in g.meta["warnings"])

    def test_unknown_op_warns_and_estimates_from_bytes(self) -> None:
        g = import_onnx(transformer_model(custom_op=True).SerializeToString(), dims={"seq": 16})
        assert any("FancyOp" in w for w in g.meta["warnings"])
        fancy = g.ops[g.op_index["l0.fancy"]]
        assert fancy.flops == 0 and fancy.bytes_accessed > 0

    def test_train(self) -> None:
        g = import_onnx(transformer_model().SerializeToString(), train=True, dims={"seq": 32}, batch=2)
        roundtrip(g)
        assert "loss" in g.op_index
        # the residual input of layer 1 is read by two forward ops: two partial gradients, both consumed
        res = g.ops[g.op_index["l0.res2.bwd"]]
        assert any(t.startswith("l0.out.grad") for t in res.inputs)
        assert len([op for op in g.ops if op.phase == "optimizer"]) == 2 * 7
        assert g.total_bytes_by_kind["gradient"] == g.total_bytes_by_kind["weight"]


class TestBadFiles:
    def test_truncated(self) -> None:
        data = RESNET.read_bytes()
        for cut in (10, 1000, len(data) // 2, len(data) - 3):
            with pytest.raises(InputError, match=r"x\.onnx: "):
                import_onnx(data[:cut], source="x.onnx")

    @pytest.mark.parametrize("data", [b"", b"hello world", b'{"format": "tierplan-graph/1"}', bytes(range(256)) * 4,
                                      b"\x00" * 100])
    def test_not_onnx(self, data: bytes) -> None:
        with pytest.raises(InputError, match="ONNX"):
            import_onnx(data, source="x.onnx")

    def test_missing_file(self) -> None:
        with pytest.raises(InputError, match="no such file"):
            import_onnx("/nonexistent/model.onnx")

    def test_cycle(self) -> None:
        nodes = [helper.make_node("Relu", ["b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2"),
                 helper.make_node("Add", ["x", "a"], ["y"], name="n3")]
        graph = helper.make_graph(nodes, "cyc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
        with pytest.raises(InputError, match="cycle"):
            import_onnx(helper.make_model(graph).SerializeToString())

    def test_undefined_input(self) -> None:
        graph = helper.make_graph([helper.make_node("Relu", ["ghost"], ["y"], name="r")], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
        with pytest.raises(InputError, match="ghost"):
            import_onnx(helper.make_model(graph).SerializeToString())

    def test_absurd_shape(self) -> None:
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10**8, 10**8, 10**3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10**8, 10**8, 10**3])])
        with pytest.raises(InputError, match="1 PiB"):
            import_onnx(helper.make_model(graph).SerializeToString())

    def test_bad_batch(self) -> None:
        with pytest.raises(InputError, match="batch"):
            import_onnx(RESNET, batch=0)


_BASES = {"transformer": transformer_model(d=8, ff=16, layers=1).SerializeToString(),
          "squeezenet": (LIGHT / "light_squeezenet.onnx").read_bytes()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(base=st.sampled_from(sorted(_BASES)),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0, 1)), train=st.booleans())
def test_fuzz_mutated_bytes(base: str, edits: list[tuple[float, int]], cut: float | None, train: bool) -> None:
    """Flipped bytes and truncations of valid models: a graph or a clean InputError, never a crash."""
    data = bytearray(_BASES[base])
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    try:
        g = import_onnx(bytes(data), train=train, source="fuzz.onnx")
    except InputError as exc:
        assert exc.message.startswith("fuzz.onnx") and "\n" not in exc.message
        return
    roundtrip(g)


def _cnn(with_bn: bool, mask: bool = False) -> onnx.ModelProto:
    """conv → [BatchNorm] → Relu → Add(residual) → GlobalAveragePool, batch 2, fp32; optional folded constant
    (a ConstantOfShape 'mask' multiplied in, like a causal mask or rotary table)."""
    inits = [numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    y = "c"
    if with_bn:
        for n in ("scale", "bias", "mean", "var"):
            inits.append(numpy_helper.from_array(np.ones(8, np.float32), n))
        nodes.append(helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"))
        y = "b"
    nodes.append(helper.make_node("Relu", [y], ["r"], name="relu"))
    nodes.append(helper.make_node("Add", ["r", "c"], ["s"], name="add"))
    out = "s"
    if mask:
        inits.append(numpy_helper.from_array(np.array([1, 8, 16, 16], np.int64), "mask_shape"))
        nodes.append(helper.make_node("ConstantOfShape", ["mask_shape"], ["mask"],
                                      value=numpy_helper.from_array(np.ones(1, np.float32)), name="mask"))
        nodes.append(helper.make_node("Mul", ["s", "mask"], ["m"], name="apply_mask"))
        out = "m"
    nodes.append(helper.make_node("GlobalAveragePool", [out], ["p"], name="pool"))
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 8, 1, 1])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class TestSavedForBackward:
    """What the synthesised backward reads is what PyTorch's autograd keeps (issue 13)."""

    def test_per_op_kind(self) -> None:
        g = import_onnx(_cnn(True).SerializeToString(), train=True)
        bwd = {op.id: op for op in g.ops if op.phase == "backward"}
        assert "r" in bwd["relu.bwd"].inputs and "b" not in bwd["relu.bwd"].inputs  # ReLU: its output
        assert "c" in bwd["bn.bwd"].inputs and "b" not in bwd["bn.bwd"].inputs  # BatchNorm: its input
        assert not {"r", "c", "s"} & set(bwd["add.bwd"].inputs)  # Add: nothing
        assert {"x", "w"} <= set(bwd["conv.bwd"].inputs)  # Conv: input and weight
        # BN's output is read by nobody in the backward, so it dies in the forward pass
        assert not any("b" in op.inputs for op in g.ops if op.phase == "backward")

    def test_first_conv_computes_no_input_gradient(self) -> None:
        g = import_onnx(_cnn(True).SerializeToString(), train=True)
        conv_bwd = g.ops[g.op_index["conv.bwd"]]
        assert not any(t.startswith("x.grad") for t in conv_bwd.outputs)
        assert conv_bwd.flops == pytest.approx(g.ops[g.op_index["conv"]].flops)

    def test_batchnorm_statistics_and_folded_constants_are_not_trainable(self) -> None:
        g = import_onnx(_cnn(True, mask=True).SerializeToString(), train=True)
        states = {t.id for t in g.tensors if t.kind == "optimizer_state"}
        assert states == {"w.adam", "scale.adam", "bias.adam"}
        assert g.meta["params_total"] == 8 * 3 * 3 * 3 + 8 + 8
        assert "mask" in g.tensor_by_id and g.tensor_by_id["mask"].kind == "weight"  # stored, no Adam state

    def test_cnn_without_batchnorm_warns_in_training(self) -> None:
        warned = import_onnx(_cnn(False).SerializeToString(), train=True).meta["warnings"]
        assert any("BatchNormalization" in w and "TRAINING" in w for w in warned)
        assert not any("BatchNormalization" in w for w in import_onnx(_cnn(True).SerializeToString(), train=True).meta["warnings"])
        assert not any("BatchNormalization" in w for w in import_onnx(_cnn(False).SerializeToString()).meta["warnings"])
