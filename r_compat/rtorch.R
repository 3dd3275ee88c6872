## R torch 0.17.0's convolution API, computed by convcore.
##
## convcore.r_compat.install() sources this file into a fresh environment whose `.py` is the
## Python dispatcher (an rternalized function), then attaches a copy of it to the search path as
## "convcore".
## The R code below follows R torch's own R code (argument recycling, construction checks,
## `.output_padding`) so that its quirks come out the same; every libtorch call is a `.py_call()`.
## The quirks are listed in the docstring of convcore.r_compat.

.cpp_error_class <- c("Rcpp::exception", "C++Error", "error", "condition")
.value_error_class <- c("value_error", "rlang_error", "error", "condition")

.state <- new.env(parent = emptyenv())
.state$no_grad <- 0L

.signal <- function(message, class) {
  stop(structure(class = class, list(message = message, call = NULL)))
}

## R torch raises rlang::abort(glue::glue(...)): glue vectorises over vector values and rlang joins
## the resulting strings as bullets. The rest of R torch's message (a second template fragment) is
## lost on the way, which is why some messages stop after "but valid".
.value_error <- function(messages) {
  .signal(paste(messages, collapse = "\n\u2022 "), .value_error_class)
}

.py_call <- function(op, ...) {
  res <- .py(op, list(...))
  if (!isTRUE(res$ok)) .signal(res$message, res$class)
  res$value
}

## ---- dtypes ---------------------------------------------------------------------------------

.dtype <- function(name) structure(list(name = name), class = "convcore_dtype")

.dtype_name <- function(dtype, default) {
  if (is.null(dtype)) return(default)
  if (inherits(dtype, "convcore_dtype")) return(dtype$name)
  aliases <- c(float = "float32", float32 = "float32", double = "float64", float64 = "float64")
  if (is.character(dtype) && length(dtype) == 1 && dtype %in% names(aliases)) {
    return(aliases[[dtype]])
  }
  .signal("convcore tensors are float32 or float64: use torch_float32() or torch_float64()",
          .cpp_error_class)
}

torch_float32 <- function() .dtype("float32")
torch_float <- torch_float32
torch_float64 <- function() .dtype("float64")
torch_double <- torch_float64

.print_dtype <- function(x, ...) {
  cat("torch_", if (x$name == "float64") "Double" else "Float", "\n", sep = "")
  invisible(x)
}

.ops_dtype <- function(e1, e2) {
  name <- function(e) if (inherits(e, "convcore_dtype")) e$name else .dtype_name(e, NULL)
  switch(.Generic,
    "==" = identical(name(e1), name(e2)),
    "!=" = !identical(name(e1), name(e2)),
    stop(gettextf("'%s' is not defined for torch dtypes", .Generic))
  )
}

## ---- tensors --------------------------------------------------------------------------------
## A light tensor: an environment (so that copy_() works in place) holding an R double array that
## always has a dim attribute, the dtype name and requires_grad. float32 data is stored rounded to
## float32, so that as_array() returns what a float32 tensor holds.

.tensor <- function(data, dtype, requires_grad = FALSE) {
  t <- new.env(parent = emptyenv())
  t[["data"]] <- data
  t[["dtype"]] <- dtype
  t[["requires_grad"]] <- requires_grad
  class(t) <- "convcore_tensor"
  t
}

.is_tensor <- function(x) inherits(x, "convcore_tensor")

## What crosses to Python: a tensor becomes list(.tensor, data, dtype); everything else as is.
.payload <- function(x) {
  if (.is_tensor(x)) list(.tensor = TRUE, data = x[["data"]], dtype = x[["dtype"]]) else x
}

.from_payload <- function(p) .tensor(p$data, p$dtype)

.as_data <- function(x) {
  d <- dim(x)
  if (is.null(d)) d <- length(x)
  array(as.double(x), dim = d)
}

.with_dtype <- function(data, dtype) {
  if (dtype == "float32") .py_call("round_float32", data) else data
}

torch_tensor <- function(data, dtype = NULL, device = NULL, requires_grad = FALSE,
                         pin_memory = FALSE) {
  if (.is_tensor(data)) {
    name <- .dtype_name(dtype, data[["dtype"]])
    return(.tensor(.with_dtype(data[["data"]], name), name, requires_grad))
  }
  if (!is.numeric(data) && !is.logical(data)) {
    .signal(paste0("torch_tensor(): convcore's light tensors hold numbers, not ", class(data)[1]),
            .cpp_error_class)
  }
  name <- .dtype_name(dtype, "float32")
  .tensor(.with_dtype(.as_data(data), name), name, requires_grad)
}

torch_randn <- function(..., dtype = NULL, device = NULL, requires_grad = FALSE) {
  size <- unlist(list(...))
  name <- .dtype_name(dtype, "float32")
  t <- .from_payload(.py_call("randn", as.double(size), name))
  t[["requires_grad"]] <- requires_grad
  t
}

torch_manual_seed <- function(seed) {
  .py_call("manual_seed", seed)
  invisible(NULL)
}

as_array <- function(x) {
  if (!.is_tensor(x)) stop("as_array() needs a tensor")
  data <- x[["data"]]
  if (length(dim(data)) <= 1) as.vector(data) else data
}

with_no_grad <- function(code) {
  .state$no_grad <- .state$no_grad + 1L
  on.exit(.state$no_grad <- .state$no_grad - 1L)
  code
}

.copy_ <- function(x, src) {
  if (isTRUE(x[["requires_grad"]]) && .state$no_grad == 0L) {
    .signal("a leaf Variable that requires grad is being used in an in-place operation.",
            .cpp_error_class)
  }
  src_data <- if (.is_tensor(src)) src[["data"]] else .as_data(src)
  x[["data"]] <- .py_call("copy", x[["data"]], src_data, x[["dtype"]])
  invisible(x)
}

.convert_ <- function(x, dtype) {
  x[["data"]] <- .with_dtype(x[["data"]], dtype)
  x[["dtype"]] <- dtype
  invisible(x)
}

.tensor_dollar <- function(x, name) {
  data <- x[["data"]]
  switch(name,
    size = function(dim) {
      s <- base::dim(data)
      if (missing(dim)) return(s)
      if (dim < 0) dim <- length(s) + 1 + dim
      s[dim]
    },
    dim = function() length(base::dim(data)),
    ndim = length(base::dim(data)),
    shape = base::dim(data),
    numel = function() length(data),
    dtype = .dtype(x[["dtype"]]),
    requires_grad = x[["requires_grad"]],
    requires_grad_ = function(requires_grad = TRUE) {
      x[["requires_grad"]] <- requires_grad
      invisible(x)
    },
    detach = function() .tensor(data, x[["dtype"]]),
    cpu = function() x,
    to = function(dtype = NULL, device = NULL, ...) {
      name <- .dtype_name(dtype, x[["dtype"]])
      .tensor(.with_dtype(data, name), name, x[["requires_grad"]])
    },
    float = function() .convert_(.tensor(data, x[["dtype"]]), "float32"),
    double = function() .convert_(.tensor(data, x[["dtype"]]), "float64"),
    copy_ = function(src, non_blocking = FALSE) .copy_(x, src),
    item = function() {
      if (length(data) != 1) {
        .signal(paste0("a Tensor with ", length(data),
                       " elements cannot be converted to Scalar"), .cpp_error_class)
      }
      data[[1]]
    },
    stop(sprintf("`%s` is not a field or method of convcore's light tensor", name), call. = FALSE)
  )
}

.print_tensor <- function(x, ...) {
  data <- x[["data"]]
  cat("torch_tensor\n")
  print(if (length(dim(data)) <= 1) as.vector(data) else data)
  cat(sprintf("[ CPU%sType{%s} ]\n", if (x[["dtype"]] == "float64") "Double" else "Float",
              paste(dim(data), collapse = ",")))
  invisible(x)
}

## ---- functional API ---------------------------------------------------------------------------

.tensor_op <- function(op, input, weight, bias, ...) {
  as_t <- function(x) if (is.null(x) || .is_tensor(x)) x else torch_tensor(x)
  .from_payload(.py_call(op, .payload(as_t(input)), .payload(as_t(weight)),
                         .payload(as_t(bias)), ...))
}

nnf_conv2d <- function(input, weight, bias = NULL, stride = 1, padding = 0, dilation = 1,
                       groups = 1) {
  .tensor_op("conv2d", input, weight, bias, stride, padding, dilation, groups)
}

nnf_conv_transpose2d <- function(input, weight, bias = NULL, stride = 1, padding = 0,
                                 output_padding = 0, groups = 1, dilation = 1) {
  .tensor_op("conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups,
             dilation)
}

nnf_conv_transpose1d <- function(input, weight, bias = NULL, stride = 1, padding = 0,
                                 output_padding = 0, groups = 1, dilation = 1) {
  .tensor_op("conv_transpose1d", input, weight, bias, stride, padding, output_padding, groups,
             dilation)
}

nnf_pad <- function(input, pad, mode = "constant", value = NULL) {
  .from_payload(.py_call("pad", .payload(input), pad, mode, value))
}

## ---- modules ----------------------------------------------------------------------------------

## nn_util_pair / nn_util_single: a scalar is repeated, a longer vector is kept as given.
.ntuple <- function(n) function(x) if (length(x) > 1) x else rep(x, n)
.pair <- .ntuple(2)
.single <- .ntuple(1)

.module <- function(self, classes) {
  module <- function(...) self$forward(...)
  class(module) <- c("convcore_module", classes, "nn_module")
  self$.module <- module
  module
}

.module_self <- function(x) environment(x)$self

.module_dollar <- function(x, name) {
  self <- .module_self(x)
  if (name == "parameters") {
    params <- list(weight = self$weight, bias = self$bias)
    return(params[!vapply(params, is.null, logical(1))])
  }
  get0(name, envir = self, inherits = FALSE)
}

.module_dollar_assign <- function(x, name, value) {
  assign(name, value, envir = .module_self(x))
  x
}

.print_module <- function(x, ...) {
  n <- sum(vapply(.module_dollar(x, "parameters"), function(p) length(p[["data"]]), numeric(1)))
  cat("An `nn_module` containing ", format(n, big.mark = ","), " parameters.\n", sep = "")
  invisible(x)
}

## nn_conv_nd's initialize: the checks in R torch's order, then weight and bias.
.conv_nd <- function(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                     transposed, output_padding, groups, bias, padding_mode) {
  if (in_channels %% groups != 0) .value_error("`in_channels` must be divisible by groups")
  if (out_channels %% groups != 0) .value_error("`out_channels` must be divisible by groups")
  if (!padding_mode %in% c("zeros", "reflect", "replicate", "circular")) {
    .value_error("padding_mode must be one of [zeros, reflect, replicate, circular],")
  }
  self$in_channels <- in_channels
  self$out_channels <- out_channels
  self$kernel_size <- kernel_size
  self$stride <- stride
  self$padding <- padding
  self$dilation <- dilation
  self$transposed <- transposed
  self$output_padding <- output_padding
  self$groups <- groups
  self$padding_mode <- padding_mode
  self$padding_repeated_twice <- rep(rev(padding), each = 2)
  weight_size <- if (transposed) {
    c(in_channels, out_channels %/% groups, kernel_size)
  } else {
    c(out_channels, in_channels %/% groups, kernel_size)
  }
  params <- .py_call("init_parameters", weight_size, if (bias) out_channels else NULL)
  self$weight <- .from_payload(params$weight)
  self$weight[["requires_grad"]] <- TRUE
  self$bias <- NULL
  if (!is.null(params$bias)) {
    self$bias <- .from_payload(params$bias)
    self$bias[["requires_grad"]] <- TRUE
  }
  self$to <- function(dtype = NULL, device = NULL, ...) {
    if (!is.null(dtype)) {
      name <- .dtype_name(dtype, NULL)
      for (p in list(self$weight, self$bias)) if (!is.null(p)) .convert_(p, name)
    }
    invisible(self$.module)
  }
  self
}

## nn_conv_transpose_nd's .output_padding, R torch's algorithm: k is taken as input$dim() - 2
## (a batch dimension is assumed) and dilation is left out of the valid range.
.output_padding <- function(self, input, output_size) {
  if (is.null(output_size)) return(self$output_padding)
  stride <- self$stride
  padding <- self$padding
  kernel_size <- self$kernel_size
  k <- input$dim() - 2
  if (length(output_size) == (k + 2)) output_size <- output_size[-c(1, 2)]
  if (length(output_size) != k) {
    .value_error(paste0("output_size must have ", k, " or ", k + 2, " elements (got ",
                        length(output_size), ")"))
  }
  min_sizes <- list()
  max_sizes <- list()
  for (d in seq_len(k)) {
    min_sizes[[d]] <- (input$size(d + 2) - 1) * stride[d] - 2 * padding[d] + kernel_size[d]
    max_sizes[[d]] <- min_sizes[[d]] + stride[d] - 1
  }
  for (i in seq_along(output_size)) {
    size <- output_size[i]
    if (size < min_sizes[[i]] || size > max_sizes[[i]]) {
      .value_error(paste0("requested an output of size ", output_size, ", but valid"))
    }
  }
  res <- list()
  for (d in seq_len(k)) res[[d]] <- output_size[d] - min_sizes[[d]]
  res
}

.conv_transpose_nd <- function(name, ntuple, functional, in_channels, out_channels, kernel_size,
                               stride, padding, output_padding, groups, bias, dilation,
                               padding_mode) {
  kernel_size <- ntuple(kernel_size)
  stride <- ntuple(stride)
  padding <- ntuple(padding)
  dilation <- ntuple(dilation)
  output_padding <- ntuple(output_padding)
  if (padding_mode != "zeros") .value_error("Only `zeros` padding is supported.")
  self <- new.env(parent = emptyenv())
  .conv_nd(self, in_channels, out_channels, kernel_size, stride, padding, dilation, TRUE,
           output_padding, groups, bias, padding_mode)
  self$forward <- function(input, output_size = NULL) {
    output_padding <- .output_padding(self, input, output_size)
    functional(input, self$weight, self$bias, self$stride, self$padding, output_padding,
               self$groups, self$dilation)
  }
  .module(self, c(name, "nn_conv_transpose_nd", "nn_conv_nd"))
}

nn_conv_transpose2d <- function(in_channels, out_channels, kernel_size, stride = 1, padding = 0,
                                output_padding = 0, groups = 1, bias = TRUE, dilation = 1,
                                padding_mode = "zeros") {
  .conv_transpose_nd("nn_conv_transpose2d", .pair, nnf_conv_transpose2d, in_channels,
                     out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                     dilation, padding_mode)
}

nn_conv_transpose1d <- function(in_channels, out_channels, kernel_size, stride = 1, padding = 0,
                                output_padding = 0, groups = 1, bias = TRUE, dilation = 1,
                                padding_mode = "zeros") {
  .conv_transpose_nd("nn_conv_transpose1d", .single, nnf_conv_transpose1d, in_channels,
                     out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                     dilation, padding_mode)
}

nn_conv2d <- function(in_channels, out_channels, kernel_size, stride = 1, padding = 0,
                      dilation = 1, groups = 1, bias = TRUE, padding_mode = "zeros") {
  kernel_size <- .pair(kernel_size)
  stride <- .pair(stride)
  if (!is.character(padding)) padding <- .pair(padding)
  dilation <- .pair(dilation)
  self <- new.env(parent = emptyenv())
  .conv_nd(self, in_channels, out_channels, kernel_size, stride, padding, dilation, FALSE,
           .pair(0), groups, bias, padding_mode)
  ## Non-zeros modes pad with nnf_pad (reversed padding, each repeated twice) and convolve with
  ## padding 0, so a string padding fails there ("Can't convert argument:pad").
  self$forward <- function(input) {
    if (self$padding_mode != "zeros") {
      padded <- nnf_pad(input, self$padding_repeated_twice, mode = self$padding_mode)
      nnf_conv2d(padded, self$weight, self$bias, self$stride, .pair(0), self$dilation,
                 self$groups)
    } else {
      nnf_conv2d(input, self$weight, self$bias, self$stride, self$padding, self$dilation,
                 self$groups)
    }
  }
  .module(self, c("nn_conv2d", "nn_conv_nd"))
}

## ---- helpers for Python (the Python view and crosscheck) ----------------------------------------

## Calls `fun` with `args` (tensor payloads turned into tensors) and reports the result or the
## condition instead of raising, so that Python sees R's message and class vector.
.cc_pycall <- function(fun, args) {
  args <- lapply(args, function(a) if (is.list(a) && isTRUE(a$.tensor)) .from_payload(a) else a)
  tryCatch({
    list(ok = TRUE, value = .cc_export(do.call(fun, args)))
  }, error = function(e) list(ok = FALSE, message = conditionMessage(e), class = class(e)))
}

.cc_export <- function(value) {
  if (is.list(value) && !is.object(value)) lapply(value, .cc_export) else .payload(value)
}

.cc_set_parameter <- function(module, name, value) {
  with_no_grad(.module_dollar(module, name)$copy_(value))
  invisible(NULL)
}

## Runs one recorded case the way it was recorded; `lookup(name)` returns the API's functions
## (convcore's, or the real R torch's in live mode). Reports the stage an error came from.
.cc_run_case <- function(lookup, api, args, input, weight, bias, dtype, output_size) {
  stage <- "setup"
  tryCatch({
    dt <- lookup(if (dtype == "float64") "torch_float64" else "torch_float32")()
    tensor <- function(x) if (is.null(x)) NULL else lookup("torch_tensor")(x, dtype = dt)
    x <- tensor(input)
    w <- tensor(weight)
    b <- tensor(bias)
    if (startsWith(api, "nnf_")) {
      stage <- "call"
      out <- do.call(lookup(api), c(list(x, w, b), args))
    } else {
      stage <- "construct"
      m <- do.call(lookup(api), args)
      stage <- "setup"
      if (dtype == "float64") m$to(dtype = dt)
      lookup("with_no_grad")(m$weight$copy_(w))
      if (!is.null(b)) lookup("with_no_grad")(m$bias$copy_(b))
      stage <- "forward"
      out <- if (is.null(output_size)) m(x) else m(x, output_size = output_size)
    }
    list(ok = TRUE, value = lookup("as_array")(out), dtype = out$dtype == dt)
  }, error = function(e) {
    list(ok = FALSE, stage = stage, message = conditionMessage(e), class = class(e))
  })
}

## Builds a module after torch_manual_seed(seed) and returns its parameters as arrays.
.cc_run_init <- function(lookup, api, args, seed) {
  lookup("torch_manual_seed")(seed)
  m <- do.call(lookup(api), args)
  arr <- function(p) if (is.null(p)) NULL else array(lookup("as_array")(p), dim = p$size())
  list(weight = arr(m$weight), bias = arr(m$bias),
       float32 = m$weight$dtype == lookup("torch_float32")())
}

.cc_lookup <- function(name) get(name, envir = parent.env(environment()))
.cc_torch_lookup <- function(name) getExportedValue("torch", name)

registerS3method("$", "convcore_tensor", .tensor_dollar)
registerS3method("print", "convcore_tensor", .print_tensor)
registerS3method("dim", "convcore_tensor", function(x) base::dim(x[["data"]]))
registerS3method("as.array", "convcore_tensor", function(x, ...) x[["data"]])
registerS3method("$", "convcore_module", .module_dollar)
registerS3method("$<-", "convcore_module", .module_dollar_assign)
registerS3method("print", "convcore_module", .print_module)
registerS3method("print", "convcore_dtype", .print_dtype)
registerS3method("Ops", "convcore_dtype", .ops_dtype)
